"""The ``cloudqueue`` command line.

    cloudqueue worker module:app [--concurrency N] [--until-empty] [--schedules]
                      [--queues critical,default,bulk] [--strategy strict|weighted]
                      [--weights critical=5,default=3,bulk=1]
    cloudqueue scheduler module:app [--catch-up HOURS] [--once]
    cloudqueue enqueue TARGET JOB JSON [--delay SECONDS] [--key KEY] [--ordering-key GROUP]
                      [--queue NAME] [--priority N]
    cloudqueue stats TARGET [--json] [--watch [SECONDS]] [--count N] [--queue NAME]
    cloudqueue dead-letters list|redrive|purge TARGET [--queue NAME]
    cloudqueue terraform-vars module:app aws-sqs-lambda|gcp-cloud-tasks|gcp-pubsub
    cloudqueue dashboard module:app [--host 127.0.0.1] [--port 8000] [--read-only] [--token T]
    cloudqueue flows list module:app [--status S] [--limit N] [--json]
    cloudqueue flows show module:app FLOW_ID [--json]

TARGET is a backend URL (``sqs://orders?region=eu-west-1``) or ``module:app``, which
also lets ``enqueue`` validate the payload against the job's model; ``worker`` and
``terraform-vars`` need ``module:app`` (a URL has no jobs).

Every error, a usage error included, prints one ``error:`` line to stderr and exits 1.
A command refuses a private in-process memory queue (``memory://``, the default while
``CLOUDQUEUE_URL`` is unset): what it enqueued or read there would be gone at exit.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click

from ._errors import CloudQueueError, ConfigurationError
from ._flows_cli import flows
from .app import App
from .backends import from_url
from .backends.base import Backend
from .backends.memory import MemoryBackend


def load_app(spec: str) -> App:
    """Import ``module:attribute`` and return the App it names.

    Raises:
        click.BadParameter: the module or the attribute is missing or is not an App.
    """
    if "://" in spec:
        raise click.BadParameter(
            f"{spec!r} is a queue URL, but this command needs the app with the jobs (a URL has "
            "none): write MODULE:APP, e.g. myproject.jobs:app, and give the app its queue "
            "(cq.App(..., backend=URL) or CLOUDQUEUE_URL)", param_hint="'MODULE:APP'")
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not module:app (e.g. myproject.jobs:app)",
                                 param_hint="'MODULE:APP'")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import module {module_name!r}: {exc}",
                                 param_hint="'MODULE:APP'") from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        found = "nothing" if app is None else type(app).__name__
        raise click.BadParameter(f"{module_name}.{attr} is {found}, not a cloudqueue App",
                                 param_hint="'MODULE:APP'")
    return app


def _target(spec: str, queue: str | None = None) -> tuple[Backend, App | None]:
    """The backend TARGET names: a URL, or MODULE:APP's queue ``queue`` (default: its default)."""
    if "://" in spec:
        if queue is not None:
            raise click.BadParameter(
                f"--queue {queue} picks one of an app's queues, and {spec!r} is a queue URL "
                "already: drop --queue, or give MODULE:APP", param_hint="'--queue'")
        backend = from_url(spec)
        _check_memory(backend, spec)
        return backend, None
    if ":" not in spec:
        raise click.BadParameter(
            f"{spec!r} is neither a queue URL (e.g. sqs://orders?region=eu-west-1) nor "
            "MODULE:APP (e.g. myproject.jobs:app)", param_hint="'TARGET'")
    app = load_app(spec)
    backend = app.backend if queue is None else app.queue(queue)
    _check_memory(backend, spec, app)
    return backend, app


def _check_memory(backend: Backend, spec: str, app: App | None = None) -> None:
    """Refuse a private memory queue; warn about a named one (both end with the process).

    Raises:
        ConfigurationError: ``backend`` is a private memory queue.
    """
    if not isinstance(backend, MemoryBackend):
        return
    if not backend.name:
        if app is not None and app.backend_url == "memory://" and not os.environ.get("CLOUDQUEUE_URL"):
            why = (f"app {app.name!r} ({spec}) uses a private in-process memory queue "
                   "(CLOUDQUEUE_URL is unset, and memory:// is the default)")
        else:
            why = f"{spec} is a private in-process memory queue"
        raise ConfigurationError(
            f"{why}: what this command enqueues or reads there is gone when it exits; "
            "set CLOUDQUEUE_URL to the app's queue (e.g. sqs://orders?region=eu-west-1) "
            "or give the app its backend=")
    click.echo(f"warning: memory://{backend.name} lives inside this process only: what this "
               "command enqueues there is gone when it exits", err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as an aligned plain-text table."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _OneLine(click.ClickException):
    """An error shown as one ``error:`` line on stderr, with exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line(text: str) -> str:
    # a payload error lists one field a line: joined, so scripts read one line
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _usage_error(exc: click.ClickException) -> _OneLine:
    message = exc.format_message()
    command = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else "cloudqueue"
    if isinstance(exc, click.UsageError) and exc.ctx is not None and (
            isinstance(exc, click.MissingParameter) or not isinstance(exc, click.BadParameter)):
        message += f" (usage: {exc.ctx.get_usage().removeprefix('Usage: ')}; see {command} --help)"
    return _OneLine(_one_line(message))


#: what click >= 8.2 raises for a group called without its command (8.1 shows the help, exit 0)
_NO_COMMAND: tuple[type[Exception], ...] = tuple(
    error for error in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if error is not None)


class _Group(click.Group):
    """Turns usage and cloudqueue errors into one ``error:`` line and exit status 1."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _NO_COMMAND as exc:  # bare ``cloudqueue``: the help, as is
            click.echo(str(exc), err=True)
            raise click.exceptions.Exit(1) from None
        except click.ClickException as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _OneLine:
            raise
        except _NO_COMMAND as exc:  # ``cloudqueue dead-letters``
            click.echo(str(exc), err=True)
            ctx.exit(1)
        except click.ClickException as exc:
            raise _usage_error(exc) from None
        except CloudQueueError as exc:
            raise _OneLine(_one_line(str(exc))) from None


@click.group(cls=_Group)
@click.version_option(package_name="cloudqueue")
@click.option("-v", "--verbose", is_flag=True, help="Debug log output.")
def cli(verbose: bool) -> None:
    """Background jobs on cloud queues: run workers, enqueue, inspect and redrive."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("-c", "--concurrency", default=8, show_default=True, type=click.IntRange(min=1),
              help="Jobs running at once.")
@click.option("--until-empty", is_flag=True,
              help="Stop once the queue is empty (pending retries and delays included).")
@click.option("--visibility-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Hide each received message this long (default: the queue's own setting); "
                   "the heartbeat extends it while the job runs.")
@click.option("--prefetch", default=1, show_default=True, type=click.IntRange(min=1),
              help="Messages each consumer takes per receive.")
@click.option("--queues", "queue_list", metavar="NAME,NAME,...",
              help="The app queues to consume, highest priority first (default: all, as declared).")
@click.option("--strategy", type=click.Choice(["strict", "weighted"]), default="strict",
              show_default=True,
              help="strict: never take from a lower queue while a higher one has due work; "
                   "weighted: share receives by --weights, starving none.")
@click.option("--weights", metavar="NAME=N,...",
              help="Weights for --strategy weighted (default: n, n-1, ..., 1 in queue order).")
@click.option("--schedules", "with_schedules", is_flag=True,
              help="Also enqueue the jobs' cron slots when due (as `cloudqueue scheduler` does).")
def worker(app_spec: str, concurrency: int, until_empty: bool, visibility_timeout: float | None,
           prefetch: int, queue_list: str | None, strategy: str, weights: str | None,
           with_schedules: bool) -> None:
    """Consume the app's queues until SIGTERM/SIGINT (graceful: running jobs finish)."""
    chosen = _weights(weights) if weights is not None else None
    app = load_app(app_spec)
    queues = app.queues_in(_names(queue_list) if queue_list is not None else None)
    for name in queues:
        _check_memory(app.queue(name), app_spec, app)
    visibility = timedelta(seconds=visibility_timeout) if visibility_timeout is not None else None
    scheduler = thread = None
    if with_schedules:
        import threading

        from .schedules import Scheduler

        scheduler = Scheduler(app)
        if not scheduler.schedules:
            raise ConfigurationError(f"app {app.name!r} has no job with a schedule=; drop --schedules")
        scheduler.tick()  # what is due now is in the queue before the first receive
        thread = threading.Thread(target=scheduler.run, name="cloudqueue-scheduler", daemon=True)
        thread.start()
    try:
        stats = app.worker(concurrency=concurrency, visibility_timeout=visibility, prefetch=prefetch,
                           queues=queues, strategy=strategy,
                           weights=chosen).run(until_empty=until_empty)
    finally:
        if scheduler is not None and thread is not None:
            scheduler.stop()
            thread.join(timeout=5)
    click.echo(table(["succeeded", "retried", "dead-lettered", "released"],
                     [[stats.succeeded, stats.retried, stats.dead_lettered, stats.released]]))


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one queue, e.g. critical,default", param_hint="'--queues'")
    return names


def _weights(text: str) -> dict[str, int]:
    weights: dict[str, int] = {}
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise click.BadParameter(f"{part.strip()!r} is not NAME=N (e.g. critical=5,default=1)",
                                     param_hint="'--weights'")
        weights[name.strip()] = int(number)
    return weights


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--catch-up", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="HOURS",
              help="On start, enqueue the slots of missed=\"catch_up\" schedules from this many hours "
                   "back (each at most catch_up_limit; a slot already enqueued keeps its key).")
@click.option("--grace", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="How late a slot of a missed=\"skip\" schedule may be enqueued.")
@click.option("--once", is_flag=True, help="Enqueue what is due now and exit.")
def scheduler(app_spec: str, catch_up: float, grace: float, once: bool) -> None:
    """Enqueue the app's cron slots when due, until SIGTERM/SIGINT (in the cloud, the
    schedules that terraform-vars writes do this instead)."""
    import signal

    from .schedules import Scheduler

    app = load_app(app_spec)
    for name in sorted({job.queue for job in app.jobs.values() if job.schedules}):
        _check_memory(app.queue(name), app_spec, app)
    runner = Scheduler(app, catch_up=timedelta(hours=catch_up), grace=timedelta(seconds=grace))
    if not runner.schedules:
        raise ConfigurationError(f"app {app.name!r} has no job with a schedule=; nothing to do")
    if once:
        fired = runner.tick()
        click.echo(table(["job", "schedule", "slot (UTC)", "job id"],
                         [[f.job, f.schedule, f.slot.strftime("%Y-%m-%d %H:%M"), f.job_id] for f in fired]))
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    runner.run()


@cli.command()
@click.argument("target")
@click.argument("job")
@click.argument("payload", metavar="JSON")
@click.option("--delay", type=click.FloatRange(min=0), help="Seconds to hold the job back.")
@click.option("--key", "idempotency_key", help="Idempotency key.")
@click.option("--ordering-key", help="FIFO group (needs a FIFO queue).")
@click.option("--queue", help="The app queue to send it to (MODULE:APP only; default: the job's).")
@click.option("--priority", type=int, help="Higher runs first (needs a queue with priorities).")
def enqueue(target: str, job: str, payload: str, delay: float | None,
            idempotency_key: str | None, ordering_key: str | None, queue: str | None,
            priority: int | None) -> None:
    """Enqueue JOB with a JSON payload; print its id.

    With TARGET as module:app the payload is validated against the job's model first.
    With a URL it is sent as given (source cloudqueue://cli), and the consumer validates
    it; delays, keys and ordering keys are checked against the queue either way.
    """
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"payload is not JSON: {exc}", param_hint="JSON") from None
    wait = timedelta(seconds=delay) if delay else None
    backend, app = _target(target, queue)
    if app is None:
        # No app at hand: a job of that name that takes any JSON, so the envelope, the delay
        # (hops beyond the queue's limit), the key and the size go through the same checks.
        app = App("cli", backend=backend)

        def as_given(given: Any) -> None:
            """Stands in for the consumer's job, which validates the payload on receipt."""

        app.job(name=job)(as_given)
    click.echo(app.enqueue(job, data, delay=wait, idempotency_key=idempotency_key,
                           ordering_key=ordering_key, queue=queue, priority=priority))


_QUEUE_OPTION = click.option(
    "--queue", help="Which of the app's queues (MODULE:APP only; default: its default queue).")


class _Seconds(click.ParamType):  # type: ignore[type-arg]  # generic in recent click; 8.1 cannot subscript it
    """``--watch``'s optional SECONDS, with a hint when it swallowed the TARGET instead."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds (write TARGET before --watch, or "
                      "--watch=SECONDS)", param, ctx)
        if not seconds > 0:
            self.fail(f"{value!r}: the interval must be more than 0 seconds", param, ctx)
        return seconds


@cli.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (with --watch: one a line, per sample); null = unknown.")
@click.option("--watch", type=_Seconds(), is_flag=False, flag_value=2.0, default=None, metavar="[SECONDS]",
              help="Redraw every SECONDS (default 2), with rates between samples, until Ctrl-C.")
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --watch: stop after N samples.")
@click.option("--queue", help="Only this one of the app's queues (MODULE:APP only; default: all).")
def stats(target: str, as_json: bool, watch: float | None, count: int | None, queue: str | None) -> None:
    """Show each queue's health: waiting, in flight, delayed, dead letters, oldest age.

    TARGET is a queue URL or MODULE:APP (a row for every queue of the app). A figure the
    queue service cannot tell is shown as "unknown" (null in JSON), never as 0. The
    running totals of completed and failed deliveries (where the queue keeps them) are
    shown as such, and under --watch as rates per second, with backlog/s, the net change
    of the messages in the queue. Write --watch after TARGET, or as --watch=SECONDS.
    For MODULE:APP with a shared store, a flows section follows: flows per status and
    the oldest running flow's age (under --watch, read again every 30 seconds at most).
    """
    from . import _stats

    backend, app = _target(target, queue)
    queues = _stats.queues_of(app, queue) if app is not None else [
        (_stats.queue_name(target, backend, target), backend)]
    if watch is None and count is None:
        samples = _stats.sample(queues)
        if app is None and samples[0].error and not as_json:
            raise _OneLine(samples[0].error)  # the one URL asked cannot answer: its error, one line
        flows = _stats.sample_flows(app)
        if as_json:
            click.echo(json.dumps(_stats.render_json(samples, flows=flows)))
        else:
            click.echo(_stats.render_table(samples, flows=flows))
        if any(one.error for one in samples) or (flows is not None and flows.error):
            raise click.exceptions.Exit(1)
        return
    _watch(queues, watch or 2.0, count, as_json, app)


def _watch(queues: list[tuple[str, Backend]], every: float, count: int | None, as_json: bool,
           app: App | None = None) -> None:
    """Sample every ``every`` seconds until Ctrl-C (or ``count`` samples); redraw in place on
    a terminal, print frame after frame otherwise."""
    import time

    from . import _stats

    redraw = not as_json and sys.stdout.isatty()
    previous: list[_stats.QueueSample] | None = None
    taken = 0
    flows_at: float | None = None
    flows: _stats.FlowsSample | None = None
    try:
        while True:
            started = time.monotonic()
            samples = _stats.sample(queues)
            # listing flows reads every flow's head (on DynamoDB a Scan of the store's table):
            # at most once every FLOWS_EVERY seconds, the frames between show the last one
            if flows_at is None or started - flows_at >= max(every, _stats.FLOWS_EVERY):
                flows, flows_at = _stats.sample_flows(app), started
            between = [_stats.rates(before, after) for before, after in zip(previous, samples, strict=True)] \
                if previous is not None else []
            taken += 1
            if as_json:
                click.echo(json.dumps(_stats.render_json(samples, between, flows=flows)))
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
                frame = f"{when}  every {every:g}s (Ctrl-C stops)\n{_stats.render_table(samples, between, flows)}"
                click.echo(f"\x1b[H\x1b[2J{frame}" if redraw else f"{frame}\n")
            sys.stdout.flush()
            if count is not None and taken >= count:
                return
            previous = [one if one.stats is not None or prev.stats is None else prev
                        for prev, one in zip(previous, samples, strict=True)] if previous else samples
            time.sleep(max(every - (time.monotonic() - started), 0.0))
    except KeyboardInterrupt:
        if redraw:
            click.echo()
        return


@cli.group("dead-letters", cls=_Group)
def dead_letters() -> None:
    """List, redrive or purge dead letters."""


@dead_letters.command("list")
@click.argument("target")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line, bodies included.")
@_QUEUE_OPTION
def list_dead(target: str, limit: int, as_json: bool, queue: str | None) -> None:
    """Show dead letters with why they are there (nothing is removed)."""
    backend, _ = _target(target, queue)
    letters = backend.dead_letters(limit=limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps({
                "message_id": letter.message_id, "job_type": letter.job_type,
                "reason": letter.reason, "attempts": letter.attempts,
                "dead_lettered_at": letter.dead_lettered_at.isoformat()
                if letter.dead_lettered_at else None,
                "body": letter.body.decode("utf-8", "replace")}))
        return
    if not letters:
        click.echo("no dead letters")
        return
    rows = [[lt.message_id, lt.job_type or "?", lt.attempts,
             lt.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S") if lt.dead_lettered_at else None,
             _clip(lt.reason, 80)] for lt in letters]
    click.echo(table(["id", "job", "attempts", "when (UTC)", "reason"], rows))


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dead_letters.command("redrive")
@click.argument("target")
@click.option("--id", "ids", multiple=True, help="Only these dead letters (repeatable).")
@_QUEUE_OPTION
def redrive(target: str, ids: tuple[str, ...], queue: str | None) -> None:
    """Put dead letters back on their queue, intact."""
    backend, _ = _target(target, queue)
    count = backend.redrive(list(ids) or None)
    click.echo(f"redrove {count} message(s)")


@dead_letters.command("purge")
@click.argument("target")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_QUEUE_OPTION
def purge(target: str, yes: bool, queue: str | None) -> None:
    """Delete every dead letter."""
    if not yes:
        where = target if queue is None else f"queue {queue!r} of {target}"
        click.confirm(f"delete every dead letter of {where}?", abort=True)
    backend, _ = _target(target, queue)
    count = backend.purge_dead_letters()
    click.echo("purged" if count < 0 else f"purged {count} message(s)")


@cli.command("terraform-vars")
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("module", type=click.Choice(["aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub"]))
def terraform_vars(app_spec: str, module: str) -> None:
    """Print the tfvars that terraform/MODULE needs for the app's jobs (attempts, backoff, FIFO)."""
    from .tfvars import render_tfvars

    click.echo(render_tfvars(load_app(app_spec), module), nl=False)


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any but loopback needs --token or --basic-auth.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(min=0, max=65535))
@click.option("--read-only", is_flag=True, help="Hide redrive, purge and enqueue.")
@click.option("--token", envvar="CLOUDQUEUE_DASHBOARD_TOKEN", default=None,
              help="Ask for this token (env CLOUDQUEUE_DASHBOARD_TOKEN); the address printed carries it once.")
@click.option("--basic-auth", "basic_auth", envvar="CLOUDQUEUE_DASHBOARD_BASIC_AUTH", default=None,
              metavar="USER:PASSWORD", help="Ask for HTTP basic auth (env CLOUDQUEUE_DASHBOARD_BASIC_AUTH).")
@click.option("--refresh", type=click.FloatRange(min=0.5), default=2.0, show_default=True, metavar="SECONDS",
              help="How often the live view refreshes.")
def dashboard(app_spec: str, host: str, port: int, read_only: bool, token: str | None,
              basic_auth: str | None, refresh: float) -> None:
    """Serve the web dashboard: queue health, job types, dead letters, enqueue forms."""
    from .dashboard import check_bind, parse_basic_auth

    basic = parse_basic_auth(basic_auth) if basic_auth else None
    check_bind(host, token=token, basic_auth=basic)  # before importing the app or binding anything
    app = load_app(app_spec)
    _check_memory(app.backend, app_spec, app)
    from .dashboard import serve

    shown = f"[{host}]" if ":" in host else host
    link = f"http://{shown}:{port}/" + ("?token=…" if token else "")
    click.echo(f"cloudqueue dashboard for app {app.name!r} on {link} (Ctrl+C stops it)", err=True)
    serve(app, host=host, port=port, read_only=read_only, token=token, basic_auth=basic,
          refresh=timedelta(seconds=refresh))


cli.add_command(flows)


def main() -> None:
    """Console entry point."""
    cli(prog_name="cloudqueue")


@cli.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds between a worker's visibility extensions (Pub/Sub pull: ack deadline check).")
@click.option("--function-timeout", type=click.FloatRange(min=0, min_open=True),
              envvar="CLOUDQUEUE_FUNCTION_TIMEOUT",
              help="The push function's timeout in seconds (Pub/Sub push: ack deadline check).")
@click.option("--explain", is_flag=True, help="Say under each finding what goes wrong meanwhile.")
@click.pass_context
def doctor(ctx: click.Context, app_spec: str, heartbeat: float, function_timeout: float | None,
           explain: bool) -> None:
    """Compare what is deployed for the app's queues with its jobs; exit 1 on any error."""
    from .doctor import DoctorSettings, diagnose

    settings = DoctorSettings(
        heartbeat=timedelta(seconds=heartbeat),
        function_timeout=None if function_timeout is None else timedelta(seconds=function_timeout))
    report = diagnose(load_app(app_spec), settings)
    click.echo(report.render(explain=explain))
    if not report.ok:
        ctx.exit(1)
