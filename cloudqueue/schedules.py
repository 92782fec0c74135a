"""Cron schedules: declared on a job, enqueued by the local scheduler or by the cloud.

    @app.job(schedule=cq.Cron("0 3 * * *", tz="Europe/Berlin", payload={"kind": "daily"}))
    def nightly(payload: Report) -> None: ...

Each slot (one firing time of one schedule) runs once: its enqueue carries the
idempotency key ``cron:<job>:<schedule id>:<slot in UTC>`` (``slot_key``), so a
scheduler restarted over the same minute, two schedulers, or a platform retry of the
same firing all name the same job.

- Locally ``Scheduler`` (``cloudqueue scheduler module:app``, ``cloudqueue worker
  --schedules``) enqueues due slots. ``missed="skip"`` enqueues only a slot that is at
  most ``grace`` old when the scheduler looks; ``missed="catch_up"`` also enqueues the
  slots it missed (a process that slept, or a start with ``catch_up=``), at most
  ``catch_up_limit`` of them, oldest first.
- In the cloud nothing of ours runs on a timer: ``cloudqueue terraform-vars`` writes
  each schedule and the envelope the service sends (``cloud_body``), and the Terraform
  modules create EventBridge Scheduler schedules and Cloud Scheduler jobs.

Cron expressions are the five-field Unix ones (Vixie cron / Debian semantics, names like
``mon`` and ``jan`` allowed), evaluated by cronsim, imported only here, when a schedule is
evaluated (``pip install "cloudqueue[cron]"``). Daylight saving time, for a schedule in a
zone that has it: a slot in the hour skipped in spring (02:30 on the last Sunday of
March in Europe/Berlin) runs once at the first minute after the gap (03:00), as Debian's
cron does; a daily slot in the repeated autumn hour runs once, on its first occurrence.
EventBridge Scheduler skips a slot that falls in the spring gap (AWS's documentation
says so): give schedules that must run daily a time outside 02:00-03:00, or ``tz="UTC"``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from ._errors import ConfigurationError
from .clock import Clock

if TYPE_CHECKING:
    from .app import App
    from .job import Job

__all__ = ["Cron", "Fired", "Scheduler", "aws_cron_expression", "cloud_body", "fixed_body_id", "slot_key",
           "stamp_slot"]

log = logging.getLogger("cloudqueue.scheduler")

Missed = Literal["skip", "catch_up"]
_MISSED = ("skip", "catch_up")
#: the text EventBridge Scheduler replaces with the firing's scheduled time (``2026-11-29T03:00:00Z``)
AWS_SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
_INSTALL_HINT = 'cron schedules need cronsim: pip install "cloudqueue[cron]"'


@dataclass(frozen=True)
class Cron:
    """A cron schedule for a job.

    Args:
        expression: five fields, ``minute hour day-of-month month day-of-week``
            (``"0 3 * * *"``, ``"*/15 9-17 * * mon-fri"``).
        tz: the IANA time zone the expression is read in (``"Europe/Berlin"``).
        payload: the payload each slot's job gets (validated against the job's model when
            the job is registered).
        missed: ``"skip"`` (default) or ``"catch_up"``: what the local scheduler does
            with slots it did not see in time.
        catch_up_limit: the most missed slots ``"catch_up"`` enqueues at once (newest kept).
        name: an id for the schedule, unique within its job (default: a hash of the
            expression, zone and payload); it names the cloud resources and is part of
            each slot's idempotency key.
    """

    expression: str
    tz: str = "UTC"
    payload: Any = field(default_factory=dict)
    missed: Missed = "skip"
    catch_up_limit: int = 10
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or len(self.expression.split()) != 5:
            raise ConfigurationError(
                f"cq.Cron({self.expression!r}): a cron expression has five fields, "
                "minute hour day-of-month month day-of-week, e.g. cq.Cron(\"0 3 * * *\")")
        if not isinstance(self.tz, str) or not self.tz:
            raise ConfigurationError(f"cq.Cron({self.expression!r}): tz must be an IANA zone name "
                                     f"such as \"Europe/Berlin\", got {self.tz!r}")
        if self.missed not in _MISSED:
            raise ConfigurationError(f"cq.Cron({self.expression!r}): missed must be \"skip\" or "
                                     f"\"catch_up\", got {self.missed!r}")
        if type(self.catch_up_limit) is not int or self.catch_up_limit < 1:
            raise ConfigurationError(f"cq.Cron({self.expression!r}): catch_up_limit must be an int "
                                     f">= 1, got {self.catch_up_limit!r}")
        if self.name is not None and (not isinstance(self.name, str) or not _is_name(self.name)):
            raise ConfigurationError(f"cq.Cron({self.expression!r}): name must be 1-32 letters, "
                                     f"digits, '-' or '_', got {self.name!r}")

    @property
    def id(self) -> str:
        """The schedule's id within its job: ``name``, or a stable hash of what it does."""
        if self.name is not None:
            return self.name
        import hashlib  # loads OpenSSL: only apps with schedules pay for it

        from pydantic_core import to_json

        seed = b"\x00".join([self.expression.encode(), self.tz.encode(), to_json(self.payload)])
        return hashlib.sha256(seed).hexdigest()[:8]

    @property
    def zone(self) -> Any:
        """The ``zoneinfo.ZoneInfo`` of ``tz``.

        Raises:
            ConfigurationError: the zone is unknown.
        """
        return _zone(self.tz, self.expression)

    def check(self) -> None:
        """Parse the expression and the zone now (the scheduler and terraform-vars do).

        Raises:
            ConfigurationError: naming the expression and what is wrong with it.
        """
        self.zone  # noqa: B018 - raises for an unknown zone
        self.slots_after(datetime(2000, 1, 1, tzinfo=timezone.utc)).__next__()

    def slots_after(self, moment: datetime) -> Iterator[datetime]:
        """The slots strictly after ``moment``, in order, as aware UTC datetimes."""
        cronsim = _cronsim()
        local = moment.astimezone(self.zone)
        try:
            sim = cronsim.CronSim(self.expression, local)
        except cronsim.CronSimError as exc:
            raise ConfigurationError(f"cq.Cron({self.expression!r}): {exc}") from None
        for slot in sim:
            utc = slot.astimezone(timezone.utc)
            if utc > moment:
                yield utc

    def due(self, after: datetime, until: datetime) -> list[datetime]:
        """The slots in ``(after, until]``, oldest first."""
        slots: list[datetime] = []
        for slot in self.slots_after(after):
            if slot > until:
                break
            slots.append(slot)
        return slots

    def next_after(self, moment: datetime) -> datetime:
        return next(self.slots_after(moment))


def _is_name(text: str) -> bool:
    return 1 <= len(text) <= 32 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def _cronsim() -> Any:
    try:
        import cronsim
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(_INSTALL_HINT) from None
    return cronsim


def _zone(tz: str, expression: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"cq.Cron({expression!r}): unknown time zone {tz!r}; use an IANA name such as "
            "\"Europe/Berlin\" or \"UTC\" (on a system without zone data: pip install tzdata)") from None


def schedules_of(job_name: str, schedule: Cron | Sequence[Cron] | None) -> tuple[Cron, ...]:
    """The job's ``schedule=`` as a tuple, checked for type and duplicate ids.

    Raises:
        ConfigurationError: naming the job and the fix.
    """
    if schedule is None:
        return ()
    items = (schedule,) if isinstance(schedule, Cron) else schedule
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ConfigurationError(f"job {job_name!r}: schedule must be a cq.Cron or a list of them, "
                                 f"e.g. schedule=cq.Cron(\"0 3 * * *\"), got {schedule!r}")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Cron):
            raise ConfigurationError(f"job {job_name!r}: schedule must hold cq.Cron values, got {item!r}")
        if item.id in seen:
            raise ConfigurationError(f"job {job_name!r}: two schedules share the id {item.id!r}; give "
                                     "them different payloads or name= values")
        seen.add(item.id)
    return tuple(items)


def format_slot(slot: datetime) -> str:
    """A slot as EventBridge Scheduler writes its scheduled time: ``2026-11-29T03:00:00Z``."""
    return slot.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_key(job: str, schedule: Cron, slot: datetime | str) -> str:
    """The idempotency key of one slot: ``cron:<job>:<schedule id>:<slot UTC>``.

    ``slot`` may be the text a cloud scheduler substitutes (``AWS_SCHEDULED_TIME``).
    """
    text = slot if isinstance(slot, str) else format_slot(slot)
    return f"cron:{job}:{schedule.id}:{text}"


def cloud_body(app: App, job: Job[Any, Any], schedule: Cron, slot: str = AWS_SCHEDULED_TIME) -> str:
    """The envelope a cloud scheduler sends for ``schedule``, with ``slot`` standing for the
    firing time (EventBridge Scheduler replaces ``<aws.scheduler.scheduled-time>`` in it).

    The slot is in the job id, the idempotency key and the envelope's time, so the consumer
    reads each firing's key from the body as it reads any other key.
    """
    from . import envelope

    value = job.validate(schedule.payload)
    key = slot_key(job.name, schedule, slot)
    placeholder = datetime(2000, 1, 1, tzinfo=timezone.utc)
    body = envelope.encode(job_id=f"cron-{job.name}-{schedule.id}-{slot}", app=app.name,
                           job_type=job.name, time=placeholder, data_json=job.dump_json(value), key=key)
    text = body.decode()
    stamp = '"time":"2000-01-01T00:00:00.000000Z"'
    assert stamp in text
    return text.replace(stamp, f'"time":"{slot}"', 1)


def fixed_body_id(job: str, schedule: Cron) -> str:
    """The job id of a schedule's fixed body (Cloud Scheduler's, which has no substitution)."""
    return f"cron-{job}-{schedule.id}"


def stamp_slot(app: App, body: bytes, slot: datetime) -> bytes | None:
    """A schedule's fixed body with the firing's slot filled in, as EventBridge's is.

    A Cloud Scheduler HTTP target sends the same body at every firing, and the slot in its
    ``X-CloudScheduler-ScheduleTime`` header; this puts that slot in the job id, the time and
    the idempotency key (``cron:<job>:<schedule id>:<slot UTC>``, the local scheduler's key),
    keeping the body's payload. None: the body is not the fixed body of one of ``app``'s
    schedules (it is then run as it is).
    """
    import json

    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict) or raw.get("cqkey") is not None:
        return None
    job_type = raw.get("type")
    job = app.jobs.get(job_type) if isinstance(job_type, str) else None
    if job is None:
        return None
    for schedule in job.schedules:
        if raw.get("id") == fixed_body_id(job.name, schedule):
            text = format_slot(slot)
            raw.update(id=f"{raw['id']}-{text}", time=text, cqkey=slot_key(job.name, schedule, text))
            return json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    return None


def aws_cron_expression(schedule: Cron) -> str:
    """The schedule as EventBridge Scheduler's six-field ``cron(...)``.

    Unix cron numbers Sunday 0 (or 7), EventBridge 1; one of day-of-month and day-of-week
    must be ``?``; a Unix expression that restricts both (which cron ORs) has no
    EventBridge equivalent.

    Raises:
        ConfigurationError: the expression cannot be written for EventBridge.
    """
    schedule.check()
    minute, hour, dom, month, dow = schedule.expression.split()
    if dom != "*" and dow != "*":
        raise ConfigurationError(
            f"cq.Cron({schedule.expression!r}): restricts both day-of-month and day-of-week, "
            "which Unix cron ORs and EventBridge Scheduler cannot express; split it into two "
            "schedules (schedule=[cq.Cron(...), cq.Cron(...)])")
    if dow == "*":
        return f"cron({minute} {hour} {dom} {month} ? *)"
    return f"cron({minute} {hour} ? {month} {_aws_dow(dow, schedule.expression)} *)"


_DOW_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


def _aws_dow(field_text: str, expression: str) -> str:
    def one(token: str) -> str:
        number = _DOW_NAMES.get(token.lower())
        if number is None:
            if not token.isdigit() or int(token) > 7:
                raise ConfigurationError(f"cq.Cron({expression!r}): day-of-week {token!r} cannot "
                                         "be written for EventBridge Scheduler; use 0-7 or sun-sat")
            number = int(token) % 7
        return str(number + 1)

    parts = []
    for item in field_text.split(","):
        base, slash, step = item.partition("/")
        if base == "*":
            converted = "*"
        elif "-" in base:
            low, high = base.split("-", 1)
            lo, hi = one(low), one(high)
            if int(hi) < int(lo):  # e.g. fri-sun: 6-1 wraps, which EventBridge does not
                raise ConfigurationError(f"cq.Cron({expression!r}): day-of-week range {base!r} "
                                         "wraps past Saturday; write it as a list (fri,sat,sun)")
            converted = f"{lo}-{hi}"
        else:
            converted = one(base)
        parts.append(converted + (slash + step if slash else ""))
    return ",".join(parts)


@dataclass(frozen=True)
class Fired:
    """One slot the scheduler enqueued (or found already enqueued)."""

    job: str
    schedule: str
    slot: datetime
    job_id: str


class Scheduler:
    """Enqueue the due slots of an app's schedules; the local stand-in for a cloud scheduler.

    Args:
        app: the app whose jobs carry ``schedule=``.
        clock: where time is read and waited (default: the app's).
        grace: how old a slot may be when the scheduler first sees it and still be enqueued
            under ``missed="skip"``.
        catch_up: on start, how far back ``missed="catch_up"`` schedules look for slots
            (default: nothing before the start). A slot enqueued before is not sent twice
            where the backend drops a repeated idempotency key.
    """

    def __init__(self, app: App, *, clock: Clock | None = None, grace: timedelta = timedelta(minutes=1),
                 catch_up: timedelta = timedelta(0)) -> None:
        if grace < timedelta(0) or catch_up < timedelta(0):
            raise ConfigurationError("scheduler grace and catch_up must not be negative")
        self.app = app
        self.clock = clock or app.clock
        self.grace = grace
        self.catch_up = catch_up
        self._stop = threading.Event()
        self._entries = [(job, schedule) for job in app.jobs.values() for schedule in job.schedules]
        for _, schedule in self._entries:
            schedule.check()
        now = self.clock.now()
        #: per (job, schedule id): the last moment already looked at
        self._seen: dict[tuple[str, str], datetime] = {
            (job.name, schedule.id): now - (catch_up if schedule.missed == "catch_up" else grace)
            for job, schedule in self._entries}

    @property
    def schedules(self) -> Mapping[tuple[str, str], Cron]:
        return {(job.name, schedule.id): schedule for job, schedule in self._entries}

    def tick(self) -> list[Fired]:
        """Enqueue every slot due now, by each schedule's missed-slot policy; return them."""
        now = self.clock.now()
        fired: list[Fired] = []
        for job, schedule in self._entries:
            ident = (job.name, schedule.id)
            due = schedule.due(self._seen[ident], now)
            self._seen[ident] = now
            if not due:
                continue
            if schedule.missed == "skip":
                late = [slot for slot in due if now - slot > self.grace]
                if late:
                    log.warning("job %s schedule %s: skipped %d missed slot(s) (%s to %s); "
                                "missed=\"catch_up\" would enqueue them", job.name, schedule.id,
                                len(late), format_slot(late[0]), format_slot(late[-1]))
                due = [slot for slot in due if now - slot <= self.grace]
            elif len(due) > schedule.catch_up_limit:
                dropped = due[: len(due) - schedule.catch_up_limit]
                log.warning("job %s schedule %s: %d missed slot(s) over catch_up_limit=%d not "
                            "enqueued (%s to %s)", job.name, schedule.id, len(dropped),
                            schedule.catch_up_limit, format_slot(dropped[0]), format_slot(dropped[-1]))
                due = due[-schedule.catch_up_limit:]
            for slot in due:
                key = slot_key(job.name, schedule, slot)
                job_id = job.enqueue(schedule.payload, idempotency_key=key)
                log.info("job %s schedule %s: enqueued slot %s as %s", job.name, schedule.id,
                         format_slot(slot), job_id)
                fired.append(Fired(job.name, schedule.id, slot, job_id))
        return fired

    def next_due(self) -> datetime | None:
        """The earliest slot not yet looked at (None: no schedules)."""
        nexts = [schedule.next_after(self._seen[(job.name, schedule.id)]) for job, schedule in self._entries]
        return min(nexts) if nexts else None

    def run(self, *, max_wait: timedelta = timedelta(seconds=30)) -> None:
        """Tick at each due slot until ``stop()`` (waits at most ``max_wait`` at a time)."""
        if not self._entries:
            raise ConfigurationError(f"app {self.app.name!r} has no job with a schedule=; nothing to do")
        log.info("scheduler for app %r: %d schedule(s)", self.app.name, len(self._entries))
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the queue is unreachable: the slot is retried on the next tick
                log.exception("scheduler tick failed; retrying")
                for ident in self._seen:  # look at the same window again next time
                    self._seen[ident] = min(self._seen[ident], self.clock.now() - self.grace)
            upcoming = self.next_due()
            wait = max_wait.total_seconds() if upcoming is None else \
                min(max((upcoming - self.clock.now()).total_seconds(), 0.0) + 0.01, max_wait.total_seconds())
            if self._stop.wait(0) or wait <= 0:
                continue
            self._sleep(wait)

    def _sleep(self, seconds: float) -> None:
        from .clock import SystemClock

        if isinstance(self.clock, SystemClock):
            self._stop.wait(seconds)  # wakes at once on stop()
        else:
            self.clock.sleep(seconds)

    def stop(self) -> None:
        self._stop.set()
