"""What the dashboard reads from the queues: health figures, their history, dead letters."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from .. import envelope
from .._errors import CloudQueueError
from ..backends.base import Backend, DeadLetter, QueueStats
from ..lifecycle import Reason

if TYPE_CHECKING:
    from ..app import App

#: the counts a queue reports (every ``QueueStats`` field but the age), in the order shown
FIGURES = tuple(f.name for f in dataclasses.fields(QueueStats) if f.name != "oldest_age")
LABELS = {name: name.replace("_", " ") for name in FIGURES} | {"dead_lettered": "dead-lettered",
                                                               "oldest_age": "oldest"}


def queues_of(app: App) -> list[tuple[str, Backend]]:
    """The app's queues as (name, backend) pairs, in the order the page lists them (the
    order the app declares them: highest priority first by convention)."""
    return [(name, app.queue(name)) for name in app.queue_names]


def age_text(age: timedelta | None) -> str:
    """``3m 12s``; "unknown" for None."""
    if age is None:
        return "unknown"
    seconds = int(age.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def oldest_text(stats: QueueStats | None) -> str:
    """The oldest message's age; "none" when the queue is known to hold nothing."""
    if stats is not None and stats.oldest_age is None and stats.waiting == 0 and stats.in_flight == 0 \
            and stats.delayed == 0:
        return "none"
    return age_text(None if stats is None else stats.oldest_age)


def time_text(when: datetime | None) -> str:
    if when is None:
        return "unknown"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class Sample:
    at: float
    stats: QueueStats


@dataclass
class QueueHealth:
    """One read of a queue: its figures, or the error that stopped the read."""

    name: str
    backend: Backend
    stats: QueueStats | None
    error: str | None = None
    history: list[Sample] = field(default_factory=list)

    def figure(self, name: str) -> int | None:
        return None if self.stats is None else getattr(self.stats, name)

    def as_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "name": self.name,
            "backend": repr(self.backend),
            "error": self.error,
            "figures": {name: self.figure(name) for name in FIGURES},
            "oldest_age": None if stats is None or stats.oldest_age is None else stats.oldest_age.total_seconds(),
            "oldest_text": oldest_text(stats),
            "chart": chart(self.history),
        }


#: the chart's drawing area, in SVG user units
CHART_WIDTH, CHART_HEIGHT = 300, 60
#: the lines the chart draws
CHART_LINES = ("waiting", "in_flight", "dead_lettered")


def chart(history: list[Sample]) -> dict[str, Any]:
    """SVG polyline points for each line over the history, scaled to one shared maximum.

    A figure the backend does not report (None) leaves a gap: that line gets no points.
    """
    points: dict[str, str] = {}
    if not history:
        return {"points": {name: "" for name in CHART_LINES}, "max": 0, "span": 0}
    start, end = history[0].at, history[-1].at
    span = max(end - start, 1e-9)
    top = max([1] + [getattr(s.stats, n) or 0 for s in history for n in CHART_LINES])
    for name in CHART_LINES:
        coords = []
        for sample in history:
            value = getattr(sample.stats, name)
            if value is None:
                continue
            x = 0.0 if len(history) == 1 else (sample.at - start) / span * CHART_WIDTH
            y = CHART_HEIGHT - value / top * (CHART_HEIGHT - 4) - 2
            coords.append(f"{x:.1f},{y:.1f}")
        points[name] = " ".join(coords)
    return {"points": points, "max": top, "span": round(end - start)}


class Monitor:
    """Reads each queue's stats and keeps a short history per queue, in this process.

    Samples closer together than ``min_interval`` reuse the last read, so many open pages
    do not multiply the calls to the queue service.
    """

    def __init__(self, app: App, *, keep: int = 180, min_interval: timedelta = timedelta(seconds=1)) -> None:
        self.app = app
        self.min_interval = min_interval.total_seconds()
        self._history: dict[str, deque[Sample]] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self._fresh_after = 0.0

    def invalidate(self) -> None:
        """Read afresh next time (after a redrive, purge or enqueue changed the figures)."""
        self._fresh_after = time.time()

    def read(self) -> list[QueueHealth]:
        return [self.read_one(name, backend) for name, backend in queues_of(self.app)]

    def read_one(self, name: str, backend: Backend) -> QueueHealth:
        with self._lock:
            history = self._history.setdefault(name, deque(maxlen=self._keep))
            last = history[-1] if history else None
        now = time.time()
        if last is not None and now - last.at < self.min_interval and last.at > self._fresh_after:
            return QueueHealth(name, backend, last.stats, history=list(history))
        try:
            stats = backend.stats()
        except CloudQueueError as exc:
            return QueueHealth(name, backend, None, error=f"{type(exc).__name__}: {exc}", history=list(history))
        with self._lock:
            history.append(Sample(now, stats))
            return QueueHealth(name, backend, stats, history=list(history))


@dataclass
class LetterView:
    """A dead letter as the page shows it: reason split, payload decoded and pretty-printed."""

    letter: DeadLetter
    reason: Reason
    job_type: str | None
    payload: str
    envelope: dict[str, Any] | None
    problem: str | None = None

    @property
    def message_id(self) -> str:
        return self.letter.message_id


def view_letter(letter: DeadLetter) -> LetterView:
    """Decode a dead letter's body for display (a poison body is shown as it came)."""
    reason = Reason.parse(letter.reason)
    try:
        decoded = envelope.decode(letter.body)
    except envelope.EnvelopeError as exc:
        text = letter.body.decode("utf-8", "replace")
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
        return LetterView(letter, reason, letter.job_type, text, None, problem=str(exc))
    attributes = {"id": decoded.id, "type": decoded.type, "source": decoded.source, "time": decoded.time,
                  "idempotency key": decoded.key, "not before": decoded.not_before,
                  "traceparent": decoded.traceparent}
    ref = decoded.data_ref
    if ref is not None:  # the claim check: the payload is in the payload store, not here
        attributes.update({"payload object": ref.ref, "payload digest": ref.digest,
                           "payload size": f"{ref.size} bytes"})
        payload = f"(in the payload store: {ref.ref}, {ref.size} bytes)"
    else:
        payload = json.dumps(decoded.data, indent=2, ensure_ascii=False, sort_keys=False)
    return LetterView(letter, reason, letter.job_type or decoded.type, payload,
                      {k: v for k, v in attributes.items() if v is not None})
