"""What ``cloudqueue stats`` shows: each queue's health, and rates between two samples.

    sample(queues) ──> [QueueSample]      one ``backend.stats()`` per queue, errors kept
    rates(before, after) ──> Rates         per second, only from counts both samples know
    render_table / render_json             "unknown" / null where a figure is unknown, never 0

A rate comes from running totals the queue itself keeps (``QueueStats.completed`` /
``failed``), so it means the same whichever process reads it: the memory queue counts in
the process that holds it; SQS, Cloud Tasks and Pub/Sub keep no such totals that their
APIs return, so their completed/s and failed/s are unknown. ``backlog/s`` is the net
change of the messages in the queue (waiting, in flight and delayed, those the backend
can count): negative while consumers keep ahead of producers.

For an app with a store others can read, a flows section follows: the app's flows per
status and the age of the oldest one still running (``sample_flows``, one ``Store.scan``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ._errors import CloudQueueError

if TYPE_CHECKING:
    from ._flow_views import Summary
    from .app import App
    from .backends.base import Backend, QueueStats

UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One queue's figures at one moment (``stats`` None and ``error`` set when it failed)."""

    queue: str
    backend: str
    at: float
    stats: QueueStats | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-second changes between two samples of one queue (None: unknown)."""

    seconds: float
    completed: float | None
    failed: float | None
    backlog: float | None


def queue_name(url: str | None, backend: Backend, fallback: str) -> str:
    """A queue's short name: the URL's last path part (``sqs://orders?...`` -> ``orders``),
    else the backend's ``name`` where it has one, else ``fallback``."""
    if url:
        rest = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
        name = rest.rsplit("/", 1)[-1]
        if name:
            return name
    named = getattr(backend, "name", None)  # optional on Backend: read, not required
    return named if isinstance(named, str) and named else fallback


def queues_of(app: App, queue: str | None = None) -> list[tuple[str, Backend]]:
    """Every queue of ``app`` (or only ``queue``) as ``(name, backend)``: a row each in the
    output. An app with several queues names each row by its app queue name."""
    if queue is None and len(app.queue_names) == 1:
        return [(queue_name(app.backend_url, app.backend, app.name), app.backend)]
    return [(name, app.queue(name)) for name in app.queues_in(None if queue is None else [queue])]


def sample(queues: Sequence[tuple[str, Backend]],
           clock: Callable[[], float] = time.monotonic) -> list[QueueSample]:
    """Ask every queue for its stats; a queue that fails gives a sample with its error."""
    out = []
    for name, backend in queues:
        try:
            stats = backend.stats()
        except CloudQueueError as exc:
            out.append(QueueSample(name, backend.scheme, clock(), error=" ".join(str(exc).split())))
        else:
            out.append(QueueSample(name, backend.scheme, clock(), stats))
    return out


@dataclass(frozen=True, slots=True)
class FlowsSample:
    """The app's flows at one moment: ``summary``, or a ``note`` (nothing to count: a
    private store, a store that cannot list), or the ``error`` the store gave."""

    summary: Summary | None = None
    note: str | None = None
    error: str | None = None


#: under ``--watch``, the flows section is read again after this many seconds at most
#: (it reads every flow's head; the queues' figures are cheap and read every frame)
FLOWS_EVERY = 30.0


def sample_flows(app: App | None) -> FlowsSample | None:
    """The flows section of ``app`` (None: no app, or no store, so no flows)."""
    if app is None or app.store is None:
        return None
    guard = app.idempotency
    if guard is not None and guard.url == "memory://":
        return FlowsSample(note=f"app {app.name!r} keeps its flows in a private in-process memory store, "
                                "which this command cannot see")
    from ._errors import ConfigurationError
    from ._flow_views import summary

    try:
        return FlowsSample(summary(app))
    except ConfigurationError as exc:  # a store that cannot list its documents
        return FlowsSample(note=" ".join(str(exc).split()))
    except CloudQueueError as exc:
        return FlowsSample(error=" ".join(str(exc).split()))


def render_flows(flows: FlowsSample | None) -> str:
    """The flows section as a table (empty without one)."""
    if flows is None:
        return ""
    if flows.summary is None:
        return f"flows: error: {flows.error}" if flows.error else f"flows: {flows.note}"
    from .cli import table

    found = flows.summary
    oldest = "-" if found.oldest_running is None else f"{age_text(found.oldest_running)} ({found.oldest_running_id})"
    rows = [[str(found.total), *map(str, found.counts.values()), oldest]]
    text = table(["flows", *(name.replace("_", " ") for name in found.counts), "oldest running"], rows)
    if found.truncated:
        text += "\n(counted the first flows the store returned; there are more)"
    return text


def _backlog(stats: QueueStats) -> int | None:
    known = [n for n in (stats.waiting, stats.in_flight, stats.delayed) if n is not None]
    return sum(known) if known else None


def _per_second(before: int | None, after: int | None, seconds: float, *,
                counter: bool) -> float | None:
    if before is None or after is None or seconds <= 0:
        return None
    if counter and after < before:  # the queue's totals started again (a restart): no rate
        return None
    return (after - before) / seconds


def rates(before: QueueSample, after: QueueSample) -> Rates | None:
    """The rates between two samples of one queue (None when either failed)."""
    if before.stats is None or after.stats is None:
        return None
    seconds = after.at - before.at
    b, a = before.stats, after.stats
    return Rates(seconds,
                 _per_second(b.completed, a.completed, seconds, counter=True),
                 _per_second(b.failed, a.failed, seconds, counter=True),
                 _per_second(_backlog(b), _backlog(a), seconds, counter=False))


def age_text(age: timedelta | None) -> str:
    """``42s``, ``3m05s``, ``2h03m``, ``1d04h``; ``unknown`` for None."""
    if age is None:
        return UNKNOWN
    seconds = int(age.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _count(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _rate(value: float | None) -> str:
    if value is None:
        return UNKNOWN
    text = f"{value:+.1f}" if value else "0.0"
    return text.removeprefix("+")


_HEADERS = ["queue", "waiting", "in flight", "delayed", "dead letters", "oldest"]


def render_table(samples: Sequence[QueueSample], between: Sequence[Rates | None] | None = None,
                 flows: FlowsSample | None = None) -> str:
    """A row per queue. Without ``between``: the running totals (one-shot); with it (watch):
    the rates, ``-`` until a second sample gives one. Then the flows section, if any."""
    from .cli import table

    watching = between is not None
    headers = _HEADERS + (["completed/s", "failed/s", "backlog/s"] if watching else ["completed", "failed"])
    rows: list[list[str]] = []
    failed: list[str] = []
    for index, one in enumerate(samples):
        s = one.stats
        if s is None:
            failed.append(f"{one.queue}: error: {one.error}")
            continue
        row = [one.queue, _count(s.waiting), _count(s.in_flight), _count(s.delayed),
               _count(s.dead_lettered), age_text(s.oldest_age)]
        if between is None:
            row += [_count(s.completed), _count(s.failed)]
        else:
            r = between[index] if index < len(between) else None
            row += ["-", "-", "-"] if r is None else [_rate(r.completed), _rate(r.failed), _rate(r.backlog)]
        rows.append(row)
    section = render_flows(flows)
    return "\n".join([table(headers, rows), *failed, *(["", section] if section else [])])


def render_json(samples: Sequence[QueueSample], between: Sequence[Rates | None] | None = None,
                now: datetime | None = None, flows: FlowsSample | None = None) -> dict[str, Any]:
    """One JSON-ready document: null where a figure is unknown; ``flows`` null without a
    flows section, else its ``summary`` fields, or ``note`` / ``error``."""
    when = now or datetime.now(timezone.utc)
    queues = []
    for index, one in enumerate(samples):
        s = one.stats
        entry: dict[str, Any] = {"queue": one.queue, "backend": one.backend, "error": one.error}
        if s is not None:
            entry.update(waiting=s.waiting, in_flight=s.in_flight, delayed=s.delayed,
                         dead_lettered=s.dead_lettered,
                         oldest_age_seconds=None if s.oldest_age is None else s.oldest_age.total_seconds(),
                         completed=s.completed, failed=s.failed)
        if between is not None:
            r = between[index] if index < len(between) else None
            entry["rates"] = None if r is None else {
                "seconds": round(r.seconds, 3), "completed_per_second": r.completed,
                "failed_per_second": r.failed, "backlog_per_second": r.backlog}
        queues.append(entry)
    section: dict[str, Any] | None = None
    if flows is not None:
        section = flows.summary.to_dict() if flows.summary is not None else {"note": flows.note, "error": flows.error}
    return {"time": when.isoformat().replace("+00:00", "Z"), "queues": queues, "flows": section}
