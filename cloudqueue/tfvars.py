"""The Terraform variables an app's jobs need, for the modules under terraform/.

The values that must agree between the library and the queue are derived from the
registered jobs, so they are written once, in Python:

    cq.Retry(attempts=N)      -> max_receive_count      (aws-sqs-lambda: N plus headroom)
                              -> max_attempts           (gcp-cloud-tasks: N)
                              -> max_delivery_attempts  (gcp-pubsub: N plus headroom)
    Backoff initial / maximum -> min/max backoff        (gcp-cloud-tasks, gcp-pubsub)
    any job's ordering_key    -> fifo / enable_message_ordering
    a standard SQS queue      -> allow_send_to_queue    (delays over 15 minutes hop)
    cq.App(queues={...})      -> queues = { <name> = {...} }, one entry per queue besides
                                 the default one (the module's own queue)
    App(store="dynamodb://T") -> store_table, store_table_name  (aws-sqs-lambda)
    App(store="firestore://P/C") -> store_collection[, store_database]  (gcp-*)
    App(payload_store="s3://B/P") -> payload_bucket = { name = B, prefix = P }  (aws-sqs-lambda)
    App(payload_store="gs://B/P") -> payload_bucket = { name = B, prefix = P[, location] }  (gcp-*)

No cloud SDK is imported here.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from .retry import max_receives_for

if TYPE_CHECKING:
    from .app import App
    from .job import Job

__all__ = ["MODULES", "module_values", "ordering_of", "render_tfvars"]

MODULES = ("aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub")

#: Pub/Sub's bounds: max_delivery_attempts 5-100, retry_policy backoff 0-600 s.
PUBSUB_MIN_DELIVERY_ATTEMPTS = 5
PUBSUB_MAX_DELIVERY_ATTEMPTS = 100
PUBSUB_MAX_BACKOFF = timedelta(seconds=600)
#: SQS's bound on maxReceiveCount, and its longest per-message delay (longer ones hop).
SQS_MAX_RECEIVE_COUNT = 1000
SQS_MAX_DELAY = timedelta(minutes=15)


def render_tfvars(app: App, module: str) -> str:
    """The tfvars (HCL) for ``module`` that match ``app``'s registered jobs.

    Args:
        app: the app whose jobs the queue will carry.
        module: "aws-sqs-lambda", "gcp-cloud-tasks" or "gcp-pubsub".

    Raises:
        ConfigurationError: an unknown module, an app without jobs, or jobs the module's
            queue cannot carry (e.g. more attempts than the service allows).
    """
    render = _RENDERERS.get(module)
    if render is None:
        raise ConfigurationError(
            f"unknown Terraform module {module!r}; choose one of: {', '.join(MODULES)}")
    jobs = sorted(app.jobs.values(), key=lambda job: job.name)
    if not jobs:
        raise ConfigurationError(
            f"app {app.name!r} has no jobs registered; import the module that defines them "
            "(e.g. cloudqueue terraform-vars myproject.jobs:app ...)")
    header = [
        f"# cloudqueue terraform-vars for app {app.name!r}, module {module}.",
        "# Jobs: " + ", ".join(f"{job.name} ({_attempts(job)})" for job in jobs) + ".",
    ]
    comments, values = render(jobs)
    if len(app.queue_names) > 1:
        more, values = _queues(app, jobs, module, values)
        comments = [*comments, *more]
    # after the queues map: the store is one per module, shared by every queue's consumer
    more, store = _store(app, module)
    comments, values = [*comments, *more], {**values, **store}
    more, payloads = _payload_bucket(app, module)
    comments, values = [*comments, *more], {**values, **payloads}
    lines = [wrapped for line in [*header, *comments] for wrapped in _wrap(line)]
    return "\n".join([*lines, *_assignments(values)]) + "\n"


def _queues(app: App, jobs: list[Job[Any, Any]], module: str,
            values: dict[str, object]) -> tuple[list[str], dict[str, object]]:
    """The default queue's values at the top, and a ``queues`` map for the other queues.

    Any job can be sent to any queue (``enqueue(queue=...)``), so every queue gets the
    attempts and backoff bounds of all the app's jobs; ordering follows the jobs routed
    to each queue.
    """
    primary = app.default_queue
    others = [name for name in app.queue_names if name != primary]
    comments = [
        f"# queues: the app's queues besides {primary!r} (the module's own queue), one entry each: "
        f"{', '.join(others)}. The module names each \"<name>-<queue>\" with its own dead-letter "
        "queue and consumer; any job can be enqueued to any queue (queue=...), so each takes the "
        "attempts and backoff of all the jobs, and ordering follows the jobs routed to it.",
    ]
    for name in app.queue_names:
        if not _QUEUE_KEY.match(name):
            raise ConfigurationError(
                f"queue name {name!r} cannot name Terraform resources; use letters, digits, '-' "
                "and '_', starting with a letter")
    queues = {name: ordering_of(module, values, [job for job in jobs if job.queue == name])
              for name in others}
    top = ordering_of(module, values, [job for job in jobs if job.queue == primary])
    return comments, {**top, "queues": queues}


def ordering_of(module: str, values: dict[str, object], routed: list[Job[Any, Any]]) -> dict[str, object]:
    """``values`` with the ordering settings of the jobs ``routed`` to one queue."""
    ordered = bool(_ordered(routed))
    if module == "aws-sqs-lambda":
        return {**values, "fifo": ordered, "allow_send_to_queue": not ordered}
    if module == "gcp-pubsub":
        return {**values, "enable_message_ordering": ordered}
    return dict(values)


def module_values(jobs: Sequence[Job[Any, Any]], module: str) -> dict[str, object]:
    """The values ``render_tfvars`` prints for ``module``, for these jobs (``cloudqueue doctor``
    compares what is deployed with them).

    Raises:
        ConfigurationError: as ``render_tfvars``.
    """
    render = _RENDERERS.get(module)
    if render is None:
        raise ConfigurationError(
            f"unknown Terraform module {module!r}; choose one of: {', '.join(MODULES)}")
    if not jobs:
        raise ConfigurationError("no jobs to derive Terraform values from")
    return render(sorted(jobs, key=lambda job: job.name))[1]


def _wrap(comment: str) -> list[str]:
    return textwrap.wrap(comment, width=88, subsequent_indent="# ", break_long_words=False,
                         break_on_hyphens=False)


def _attempts(job: Job[Any, Any]) -> str:
    n = job.retry.attempts
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _max_attempts(jobs: list[Job[Any, Any]], variable: str) -> tuple[int, list[str]]:
    counts = {job.retry.attempts for job in jobs}
    most = max(counts)
    if len(counts) == 1:
        return most, []
    return most, [
        f"# The jobs' attempts differ ({', '.join(str(n) for n in sorted(counts))}): {variable} "
        f"follows the largest ({most}).",
        "# A job with fewer attempts is dead-lettered by the library after its own count.",
    ]


def _backoff_bounds(jobs: list[Job[Any, Any]], ceiling: timedelta | None,
                    names: tuple[str, str]) -> tuple[timedelta, timedelta, list[str]]:
    initial = min(job.retry.backoff.initial for job in jobs)
    maximum = max(job.retry.backoff.maximum for job in jobs)
    comments: list[str] = []
    if len({(job.retry.backoff.initial, job.retry.backoff.maximum) for job in jobs}) > 1:
        comments.append(
            f"# The jobs' backoffs differ: the queue has one retry policy, so {names[0]} takes "
            f"the shortest initial wait and {names[1]} the longest maximum.")
    if ceiling is not None and maximum > ceiling:
        comments.append(f"# A job's maximum backoff ({_seconds(maximum)} s) is over the service's "
                        f"limit: {names[1]} is capped at {_seconds(ceiling)} s.")
        maximum = ceiling
    if ceiling is not None and initial > ceiling:
        initial = ceiling
    return initial, maximum, comments


def _ordered(jobs: list[Job[Any, Any]]) -> list[str]:
    return [job.name for job in jobs if job.ordering_key is not None]


def _with_headroom(attempts: int, variable: str, ceiling: int, service: str) -> tuple[int, list[str]]:
    """The queue's own receive limit for jobs of ``attempts``: ``max_receives_for``, capped."""
    limit = max_receives_for(attempts)
    comments = [f"# {variable} = {attempts} attempts + {limit - attempts} headroom "
                "(cloudqueue.retry.max_receives_for): receives that never start a job count too, "
                "so the queue's own redrive only catches messages no consumer ever settles."]
    if limit > ceiling:
        comments.append(f"# {service} allows at most {ceiling}: {variable} is capped there, "
                        f"leaving {ceiling - attempts} receive(s) of headroom.")
        limit = ceiling
    return limit, comments


def _aws(jobs: list[Job[Any, Any]]) -> tuple[list[str], dict[str, object]]:
    attempts, comments = _max_attempts(jobs, "max_receive_count")
    if attempts > SQS_MAX_RECEIVE_COUNT:
        raise ConfigurationError(
            f"a job has {attempts} attempts; SQS's maxReceiveCount is at most {SQS_MAX_RECEIVE_COUNT}: "
            f"lower that job's cq.Retry(attempts=...)")
    count, more = _with_headroom(attempts, "max_receive_count", SQS_MAX_RECEIVE_COUNT, "SQS")
    comments += more
    ordered = _ordered(jobs)
    if ordered:
        comments.append(f"# fifo: {', '.join(ordered)} use an ordering_key (SQS MessageGroupId).")
        comments.append("# allow_send_to_queue = false: a FIFO queue takes no per-message delay, so "
                        "nothing hops; set it true if jobs enqueue follow-up jobs on this queue.")
    else:
        comments.append(f"# allow_send_to_queue: any job on a standard queue can be enqueued with a "
                        f"delay over {_seconds(SQS_MAX_DELAY) // 60} minutes, which hops through the "
                        "queue: the function must be able to send to it.")
    return comments, {"max_receive_count": count, "fifo": bool(ordered),
                      "allow_send_to_queue": not ordered}


def _cloud_tasks(jobs: list[Job[Any, Any]]) -> tuple[list[str], dict[str, object]]:
    count, comments = _max_attempts(jobs, "max_attempts")
    initial, maximum, more = _backoff_bounds(jobs, None, ("min_backoff_seconds", "max_backoff_seconds"))
    comments += more
    doublings = 0
    for job in jobs:
        backoff = job.retry.backoff
        if backoff.factor > 1 and backoff.maximum > backoff.initial > timedelta(0):
            # Cloud Tasks doubles the wait max_doublings times, then grows it linearly.
            steps = math.log(backoff.maximum / backoff.initial, 2)
            doublings = max(doublings, math.ceil(steps - 1e-9))
    factors = sorted({job.retry.backoff.factor for job in jobs} - {1.0, 2.0})
    if factors:
        comments.append(f"# Cloud Tasks doubles its backoff; factor(s) {', '.join(map(str, factors))} "
                        "are approximated by doubling.")
    ordered = _ordered(jobs)
    if ordered:
        comments.append(f"# Cloud Tasks has no ordering: {', '.join(ordered)} use an ordering_key, "
                        "which the cloudtasks backend refuses; use Pub/Sub or SQS FIFO for them.")
    return comments, {"max_attempts": count, "min_backoff_seconds": _seconds(initial),
                      "max_backoff_seconds": _seconds(maximum), "max_doublings": doublings}


def _pubsub(jobs: list[Job[Any, Any]]) -> tuple[list[str], dict[str, object]]:
    attempts, comments = _max_attempts(jobs, "max_delivery_attempts")
    if attempts > PUBSUB_MAX_DELIVERY_ATTEMPTS:
        raise ConfigurationError(
            f"a job has {attempts} attempts; Pub/Sub's max_delivery_attempts is at most "
            f"{PUBSUB_MAX_DELIVERY_ATTEMPTS}: lower that job's cq.Retry(attempts=...)")
    count, more = _with_headroom(attempts, "max_delivery_attempts", PUBSUB_MAX_DELIVERY_ATTEMPTS,
                                 "Pub/Sub")
    comments += more
    # max_receives_for never goes below 6, Pub/Sub's minimum is 5: kept for a rule change.
    count = max(count, PUBSUB_MIN_DELIVERY_ATTEMPTS)
    initial, maximum, more = _backoff_bounds(
        jobs, PUBSUB_MAX_BACKOFF, ("minimum_backoff_seconds", "maximum_backoff_seconds"))
    comments += more
    ordered = _ordered(jobs)
    if ordered:
        comments.append(f"# enable_message_ordering: {', '.join(ordered)} use an ordering_key.")
    return comments, {"max_delivery_attempts": count, "minimum_backoff_seconds": _seconds(initial),
                      "maximum_backoff_seconds": _seconds(maximum),
                      "enable_message_ordering": bool(ordered)}


_RENDERERS: dict[str, Callable[[list[Job[Any, Any]]], tuple[list[str], dict[str, object]]]] = {
    "aws-sqs-lambda": _aws,
    "gcp-cloud-tasks": _cloud_tasks,
    "gcp-pubsub": _pubsub,
}


def _store(app: App, module: str) -> tuple[list[str], dict[str, object]]:
    """The module's store variables for the app's idempotency store (none without one)."""
    guard = app.idempotency
    if guard is None:
        return [], {}
    from urllib.parse import parse_qs, urlsplit

    url = guard.url
    if url is None:
        return [f"# The app's store is a {type(guard.store).__name__} object: set the module's store "
                "variables by hand."], {}
    parts = urlsplit(url)
    wanted = "dynamodb" if module == "aws-sqs-lambda" else "firestore"
    if parts.scheme != wanted:
        return [f"# The app's store is {parts.scheme}://, not {wanted}://: the module makes no store "
                "for it."], {}
    if wanted == "dynamodb":
        table = parts.netloc + parts.path.rstrip("/")
        return [f"# store_table: the app's idempotency store is the DynamoDB table {table!r}."], \
            {"store_table": True, "store_table_name": table}
    values: dict[str, object] = {"store_collection": parts.path.strip("/")}
    database = parse_qs(parts.query).get("database")
    if database:
        values["store_database"] = database[0]
    return [f"# store_collection: the app's idempotency store is Firestore collection "
            f"{values['store_collection']!r} in project {parts.netloc!r} (the module's project)."], values


def _payload_bucket(app: App, module: str) -> tuple[list[str], dict[str, object]]:
    """The module's ``payload_bucket`` for the app's claim-check store (none without one)."""
    if not app.has_payload_store:
        return [], {}
    from urllib.parse import urlsplit

    url = app.payload_store_url
    wanted = "s3" if module == "aws-sqs-lambda" else "gs"
    if url is None:
        return ["# The app's payload store has no URL: set the module's payload_bucket by hand."], {}
    parts = urlsplit(url)
    if parts.scheme != wanted:
        return [f"# The app's payload store is {parts.scheme}://, not {wanted}://: the module makes no "
                "payload bucket for it."], {}
    bucket, prefix = parts.netloc, parts.path.strip("/")
    values: dict[str, object] = {"name": bucket}
    if prefix:
        values["prefix"] = prefix
    comments = [f"# payload_bucket: the app's claim check offloads large payloads to {wanted}://{bucket}"
                f"{'/' + prefix if prefix else ''}. The module's lifecycle rule deletes objects under "
                f"the prefix after {_PAYLOAD_AGE[module]} + max_delay_days + 1 day; set max_delay_days "
                "to the longest delay= / at= the producers use."]
    if wanted == "gs":
        location = _queue_location(app)
        if location is not None:
            values = {"location": location, **values}
        else:
            comments.append("# payload_bucket.location is required: add the bucket's location "
                            '(e.g. location = "europe-west1", where the function runs).')
    if not prefix:
        comments.append("# The payload store URL names no prefix: the module uses the queue's name, "
                        f"so the app's URL should be {wanted}://{bucket}/<name>.")
    return comments, {"payload_bucket": values}


#: what each module's payload lifecycle rule waits for (terraform/*/payloads.tf)
_PAYLOAD_AGE = {
    "aws-sqs-lambda": "the longest queue retention + the dead-letter queue's retention",
    "gcp-pubsub": "the subscription's retention + the dead-letter subscription's",
    "gcp-cloud-tasks": "31 days (the longest Cloud Tasks keeps a task) + the dead-letter subscription's retention",
}


def _queue_location(app: App) -> str | None:
    """The location of a Cloud Tasks queue the app's backend URL names (the bucket's default)."""
    from urllib.parse import urlsplit

    url = app.backend_url
    if url is None or not url.startswith("cloudtasks://"):
        return None
    parts = urlsplit(url).path.strip("/").split("/")
    return parts[0] if len(parts) == 2 and parts[0] else None


_QUEUE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _seconds(value: timedelta) -> int | float:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else round(seconds, 6)


def _assignments(values: dict[str, object], indent: str = "") -> list[str]:
    # Aligned on "=" as `terraform fmt` writes it, so the output is fmt-clean: a run of
    # one-line values is aligned, a multi-line value (a map) stands alone.
    lines: list[str] = []
    run: list[tuple[str, object]] = []

    def flush() -> None:
        if run:
            width = max(len(name) for name, _ in run)
            lines.extend(f"{indent}{name.ljust(width)} = {_hcl(value)}" for name, value in run)
            run.clear()

    for name, value in values.items():
        if isinstance(value, dict):
            flush()
            lines.append(f"{indent}{name} = {{")
            lines.extend(_assignments(value, indent + "  "))
            lines.append(f"{indent}}}")
        else:
            run.append((name, value))
    flush()
    return lines


def _hcl(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json

        return json.dumps(value)
    return str(value)
