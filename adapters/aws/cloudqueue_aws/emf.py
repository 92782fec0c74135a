"""CloudWatch metrics from a Lambda function (or anywhere with a log shipper), as Embedded
Metric Format lines: no collector, no agent, no CloudWatch API call.

    from cloudqueue_aws.emf import EMF

    app = cq.App("shop", backend="sqs://orders", middleware=[EMF(namespace="shop")])
    handler = cloudqueue_aws.lambda_handler(app)

The middleware adds up each outcome in memory and writes the lot once per invocation,
when the shim's batch ends (``Middleware.flush``): one JSON document per queue, job type
and outcome, on standard output, where Lambda hands it to CloudWatch Logs, which turns
it into metrics. Besides, it writes whenever ``max_buffered`` settles piled up (more than
an SQS batch holds) or the oldest unwritten one is ``flush_every`` old (checked as jobs
settle: a worker, ``drain``, or an invocation running longer than that), and a worker
writes when it stops; ``flush()`` writes at any time.

Metrics (dimensions ``Queue``, ``JobType``, ``Outcome`` and any given in ``dimensions``):
``Completed``, ``Failed``, ``Retried``, ``DeadLettered`` (Count), ``Duration`` (each run,
Milliseconds), ``QueueLatency`` (enqueue to the start of the first run, Milliseconds).

Written by hand rather than with ``aws-embedded-metrics``: the format is a few lines of
JSON, and the library's import costs more than this whole module at cold start (see the
adapter's README for the measurement).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cloudqueue import ConfigurationError, Middleware
from cloudqueue.lifecycle import Outcome, ReasonKind
from cloudqueue.logs import queue_name

if TYPE_CHECKING:
    from cloudqueue import App
    from cloudqueue.dispatch import Result, Task

__all__ = ["EMF"]

#: the format's limits (CloudWatch "Specification: Embedded metric format")
MAX_METRICS = 100  # MetricDefinitions in one directive
MAX_DIMENSIONS = 30  # keys in one DimensionSet
MAX_VALUES = 100  # values in one metric's array
_OURS = ("Queue", "JobType", "Outcome")
_COUNT, _MS = "Count", "Milliseconds"
_UNITS = {"Completed": _COUNT, "Failed": _COUNT, "Retried": _COUNT, "DeadLettered": _COUNT,
          "Duration": _MS, "QueueLatency": _MS}
_FAILED_KINDS = frozenset({ReasonKind.PERMANENT, ReasonKind.EXHAUSTED})
#: what each outcome counts (a dead letter is a failed run only when permanent or exhausted)
_ACK, _RETRY, _DEAD_LETTER = Outcome.ACK, Outcome.RETRY, Outcome.DEAD_LETTER
_COMPLETED: tuple[str, ...] = ("Completed",)
_RETRIED: tuple[str, ...] = ("Failed", "Retried")
_DEAD_FAILED: tuple[str, ...] = ("Failed", "DeadLettered")
_DEAD_ONLY: tuple[str, ...] = ("DeadLettered",)
#: most runs whose settle has not come yet that are remembered (their queue latency)
_PENDING_LIMIT = 10_000


class _Group:
    """What one (queue, job type, outcome) added up to since the last write."""

    __slots__ = ("counts", "durations", "latencies")

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.durations: list[float] = []
        self.latencies: list[float] = []


class EMF(Middleware):
    """Job metrics as CloudWatch Embedded Metric Format lines.

    Args:
        namespace: the CloudWatch namespace (1-255 characters, not ``AWS/...``).
        dimensions: fixed dimensions added to every metric (say ``{"Service": "orders"}``):
            up to 27 beside ``Queue``, ``JobType`` and ``Outcome``. Each distinct set of
            values is a metric CloudWatch bills for: keep them low-cardinality.
        output: where each line goes (default: standard output, as Lambda wants it).
        max_buffered: write once this many settles piled up (default: above the 10,000
            records an SQS event holds at most, so a Lambda invocation writes once).
        flush_every: write once the oldest settle not yet written is this old.

    Raises:
        ConfigurationError: a namespace or dimension CloudWatch would refuse.
    """

    def __init__(self, namespace: str = "cloudqueue", *, dimensions: Mapping[str, str] | None = None,
                 output: Callable[[str], object] | None = None, max_buffered: int = 10_000,
                 flush_every: timedelta = timedelta(seconds=60)) -> None:
        self.namespace = _checked_namespace(namespace)
        self.dimensions = _checked_dimensions(dict(dimensions or {}))
        self._dimension_set = [*_OURS, *self.dimensions]
        self._output = output
        self._max_buffered = max_buffered
        self._flush_every = flush_every.total_seconds()
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str, str], _Group] = {}
        self._buffered = 0
        self._first_at = 0.0  # when the oldest settle not yet written came
        self._queues: dict[int, str] = {}  # id(app) -> queue name
        #: id(delivery) -> (queue, latency in ms or None), from run until settled
        self._pending: dict[int, tuple[str, float | None]] = {}

    # -- hooks ----------------------------------------------------------------------------------
    def run(self, task: Task, call_next: Callable[[], Any]) -> Any:
        app = task.job.app
        queue = self._queues.get(id(app)) or self._learn(app)
        latency = None
        if task.delivery.attempt == 1:
            try:
                latency = max(app.clock.time() - _epoch(task.enqueued_at), 0.0) * 1000
            except ValueError:
                pass
        pending = self._pending
        pending[id(task.delivery)] = (queue, latency)
        if len(pending) > _PENDING_LIMIT:  # runs nobody settled (a caller that only runs)
            pending.pop(next(iter(pending)), None)
        return call_next()

    def settled(self, result: Result) -> None:
        noted = self._pending.pop(id(result.delivery), None)
        if not result.applied:  # the queue delivers it again: counted when it settles
            return
        outcome = result.outcome  # compared by identity: an enum's hash and value are slow
        if outcome is _ACK:
            names, label = _COMPLETED, "ack"
        elif outcome is _RETRY:
            names, label = _RETRIED, "retry"
        elif outcome is _DEAD_LETTER:
            reason = result.reason
            # poison, or a reason the platform gave: no run failed
            names = _DEAD_FAILED if reason is not None and reason.kind in _FAILED_KINDS else _DEAD_ONLY
            label = "dead_letter"
        else:  # skip, defer, hop, release: nothing a job did
            return
        if noted is not None:
            queue, latency = noted
        else:  # poison never runs: the one app seen, else the queue stays unnamed
            queue, latency = (next(iter(self._queues.values())) if len(self._queues) == 1 else "unknown"), None
        queue = result.queue or queue  # the queue it was settled on: one of an app's several
        key = (queue, result.job_type or "unknown", label)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group()
            counts = group.counts
            for name in names:
                counts[name] = counts.get(name, 0) + 1
            if result.duration is not None:
                group.durations.append(result.duration * 1000)
            if latency is not None:
                group.latencies.append(latency)
            if not self._buffered:
                self._first_at = time.monotonic()
            self._buffered += 1
            due = self._buffered >= self._max_buffered or (
                time.monotonic() - self._first_at >= self._flush_every)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write every outcome added up since the last write, and start again (the function
        shims call this at the end of each invocation; a worker when it stops)."""
        with self._lock:
            groups, self._groups = self._groups, {}
            self._buffered = 0
        if not groups:
            return
        write = self._output or _stdout
        for line in self.lines(groups):
            write(line)

    # -- the format -------------------------------------------------------------------------------
    def lines(self, groups: Mapping[tuple[str, str, str], _Group]) -> list[str]:
        """The EMF documents for ``groups``, within the format's limits."""
        timestamp = int(time.time() * 1000)
        out: list[str] = []
        for (queue, job_type, outcome), group in groups.items():
            root: dict[str, Any] = {"Queue": queue, "JobType": job_type, "Outcome": outcome, **self.dimensions}
            values: dict[str, Any] = dict(group.counts)
            if group.durations:
                values["Duration"] = [round(v, 3) for v in group.durations]
            if group.latencies:
                values["QueueLatency"] = [round(v, 3) for v in group.latencies]
            out += _documents(self.namespace, self._dimension_set, root, values, timestamp)
        return out

    def _learn(self, app: App) -> str:
        name = self._queues[id(app)] = queue_name(app)
        return name


def _epoch(text: str) -> float:
    """An envelope's RFC 3339 time as seconds since the epoch (``ValueError`` if it is not one)."""
    if text[-1:] == "Z":  # what cloudqueue writes: read as naive UTC, twice as fast as aware
        return (datetime.fromisoformat(text[:-1]) - _EPOCH).total_seconds()
    if text[-1:] == "z":
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.timestamp()


_EPOCH = datetime(1970, 1, 1)


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _documents(namespace: str, dimension_set: list[str], root: Mapping[str, Any],
               values: Mapping[str, Any], timestamp: int) -> list[str]:
    """One group's metrics as documents: at most ``MAX_METRICS`` definitions in each, at
    most ``MAX_VALUES`` values in each metric's array (the rest go on the next document)."""
    names = list(values)
    out = []
    for start in range(0, len(names), MAX_METRICS):
        chunk = names[start:start + MAX_METRICS]
        longest = max(len(v) if isinstance(v, list) else 1 for v in (values[n] for n in chunk))
        for offset in range(0, longest, MAX_VALUES):
            doc: dict[str, Any] = dict(root)
            metrics = []
            for name in chunk:
                value = values[name]
                if isinstance(value, list):
                    part = value[offset:offset + MAX_VALUES]
                    if not part:
                        continue
                    doc[name] = part if len(part) > 1 else part[0]
                elif offset:
                    continue  # a count goes on the first document only
                else:
                    doc[name] = value
                metrics.append({"Name": name, "Unit": _UNITS.get(name, "None")})
            doc["_aws"] = {"Timestamp": timestamp, "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [dimension_set], "Metrics": metrics}]}
            out.append(json.dumps(doc, separators=(",", ":")))
    return out


def _checked_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace.strip() or len(namespace) > 255:
        raise ConfigurationError(f"EMF(namespace={namespace!r}): a CloudWatch namespace is 1-255 "
                                 "characters, not blank; for example EMF(namespace='shop')")
    if namespace.startswith("AWS/") or namespace.startswith(":"):
        raise ConfigurationError(f"EMF(namespace={namespace!r}): CloudWatch keeps namespaces starting "
                                 "with 'AWS/' (or ':') for itself; choose your own, e.g. 'shop/jobs'")
    return namespace


def _checked_dimensions(dimensions: dict[str, str]) -> dict[str, str]:
    room = MAX_DIMENSIONS - len(_OURS)
    if len(dimensions) > room:
        raise ConfigurationError(f"EMF(dimensions=...) has {len(dimensions)} dimensions; CloudWatch takes "
                                 f"{MAX_DIMENSIONS} a metric, {room} beside Queue, JobType and Outcome")
    for name, value in dimensions.items():
        if name in _OURS or name == "_aws":
            raise ConfigurationError(f"EMF(dimensions=...): {name!r} is set by the middleware itself; "
                                     "name the dimension differently")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise ConfigurationError(f"EMF(dimensions=...): dimension name {name!r} must be 1-255 characters")
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            raise ConfigurationError(f"EMF(dimensions=...): dimension {name!r} has value {value!r}; "
                                     "a dimension value is a non-blank string of up to 1024 characters")
    return dimensions
