"""Structured logs: one record per outcome, and a JSON formatter for function runtimes.

    import cloudqueue.logs
    cloudqueue.logs.configure(json=True)      # one JSON object a line, outcomes at INFO

Every delivery the dispatcher settles is logged once, by the dispatcher's settle path
(never again by the worker or a shim), on the logger ``cloudqueue.jobs``: INFO for a
success (and skip, defer, hop, release), WARNING for a retry or a settle the queue did not
take, ERROR for a dead letter. The record carries its facts as attributes (``FIELDS``), so
any formatter can use them (``%(job_id)s``) and ``JSONFormatter`` writes them as keys.
Without a handler at INFO nothing is built for successes: the level is checked first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .dispatch import Result

__all__ = ["FIELDS", "JSONFormatter", "configure", "queue_name", "trace_ids"]

#: the logger of the outcome records (``logging.getLogger("cloudqueue.jobs").setLevel(...)``
#: turns successes off or on without touching the rest of cloudqueue's lines)
outcomes = logging.getLogger("cloudqueue.jobs")

#: the attributes an outcome record carries (None where not known)
FIELDS = {
    "job_id": "the job id (the envelope's id), else the queue's message id",
    "job_type": "the job's name (None for a message that could not be read)",
    "attempt": "1-based, as the queue counts it",
    "outcome": "ack, retry, dead_letter, hop, skip, defer or release",
    "reason_kind": "poison, permanent, exhausted, failed, skipped, deferred, ... (None for a success)",
    "reason": "the reason's text",
    "duration": "seconds the job ran (None when it did not run, or nothing measured it)",
    "delay": "seconds until it comes back (retry, defer, hop)",
    "queue": "the queue it was settled on (one of an app's several, or the event's in a shim)",
    "message_id": "the queue's id for the message",
    "settled": "False when the queue did not take the outcome (it delivers the message again)",
    "trace_id": "the OpenTelemetry trace of the run, when a span was active",
    "span_id": "the span of the run (the process span with cloudqueue.otel)",
}

_LEVELS = {"ack": logging.INFO, "skip": logging.INFO, "hop": logging.INFO, "defer": logging.INFO,
           "release": logging.INFO, "retry": logging.WARNING, "dead_letter": logging.ERROR}


def successes_logged() -> bool:
    """Whether an outcome record at INFO (a success) would be written now."""
    return outcomes.isEnabledFor(logging.INFO)


def trace_ids() -> tuple[str, str] | None:
    """The current OpenTelemetry span's trace and span id, in hex, when one is active.

    Imports nothing: without OpenTelemetry loaded there is no span to find.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def queue_name(app: App) -> str:
    """The app's queue by name: the URL's last path part (``sqs://orders?...`` -> ``orders``,
    ``pubsub://project/topic`` -> ``topic``), else the backend's ``name`` where it has one
    (the memory and SQS backends do), else the app's name."""
    url = app.backend_url
    if url:
        rest = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
        name = rest.rsplit("/", 1)[-1]
        if name:
            return name
    else:
        named = getattr(app.backend, "name", None)  # optional on Backend: read, not required
        if isinstance(named, str) and named:
            return named
    return app.name


def log_outcome(result: Result, queue: str, problem: str | None = None,
                exc_info: BaseException | None = None) -> None:
    """Log the one record of a settled delivery (``problem``: why the queue did not take it)."""
    outcome = result.outcome.value
    if exc_info is not None:
        level = logging.ERROR
    elif problem is not None and outcome != "dead_letter":
        level = logging.WARNING
    else:
        level = _LEVELS[outcome]
    if not outcomes.isEnabledFor(level):
        return
    delivery, reason = result.delivery, result.reason
    job_type = result.job_type or "?"
    job_id = result.job_id or delivery.message_id
    delay = result.delay.total_seconds() if result.delay is not None else None
    if outcome == "ack":
        took = f", {result.duration * 1000:.1f} ms" if result.duration is not None else ""
        text = f"job {job_type} {job_id} completed (attempt {delivery.attempt}{took})"
    elif outcome == "retry":
        text = (f"job {job_type} {job_id} attempt {delivery.attempt} failed ({reason and reason.text}); "
                f"retrying in {delay:.3g}s")
    elif outcome == "dead_letter":
        text = f"job {job_type} {job_id} dead-lettered: {reason or 'dead-lettered'}"
    elif outcome == "hop":
        text = f"job {job_type} {job_id} is not due yet: sent on, due in {delay:.3g}s"
    elif outcome == "defer":
        text = f"job {job_type} {job_id} deferred for {delay:.3g}s ({reason and reason.text})"
    elif outcome == "skip":
        text = f"job {job_type} {job_id} skipped ({reason and reason.text})"
    else:
        text = f"job {job_type} {job_id} given back unstarted ({reason and reason.text})"
    if problem is not None:
        text = f"{text}; not settled: {problem}; the queue delivers it again"
    ids = result.trace or trace_ids()
    fields = {
        "job_id": job_id, "job_type": result.job_type, "attempt": delivery.attempt,
        "outcome": outcome, "reason_kind": reason.kind.value if reason is not None else None,
        "reason": reason.text if reason is not None else None, "duration": result.duration,
        "delay": delay, "queue": queue, "message_id": delivery.message_id,
        "settled": result.applied, "trace_id": ids[0] if ids else None, "span_id": ids[1] if ids else None,
    }
    outcomes.log(level, "%s", text, extra=fields, exc_info=exc_info)


# -- formatting -----------------------------------------------------------------------------------
#: what every LogRecord has: anything else on a record is an extra, written as a key
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: ``timestamp``, ``level``, ``logger``, ``message``, then every
    extra on the record (an outcome record's ``FIELDS`` among them), ``exception`` when
    there is one, the active OpenTelemetry span's ``trace_id``/``span_id`` when the record
    has none, and ``xray_trace_id`` inside Lambda. Values JSON cannot hold are written as text.

    Args:
        static: keys added to every line (``{"service": "orders"}``).
    """

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": _iso(record.created), "level": record.levelname, "logger": record.name,
            "message": record.getMessage(), **self.static}
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                out[key] = value
        if "trace_id" not in out:
            ids = trace_ids()
            if ids is not None:
                out["trace_id"], out["span_id"] = ids
        xray = os.environ.get("_X_AMZN_TRACE_ID")
        if xray:
            out["xray_trace_id"] = xray.split(";", 1)[0].removeprefix("Root=")
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def _iso(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class _Ours(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` adds (so a second call replaces it rather than adding one)."""


def configure(*, json: bool = True, level: int | str = logging.INFO,
              static: dict[str, Any] | None = None, stream: Any = None) -> list[logging.Handler]:
    """Set up logging for a function runtime in one call.

    The root logger's handlers (a function runtime installs its own) get the JSON
    formatter (``json=True``) or a plain one; with no handler there, one writing to
    ``stream`` (default: standard output) is added. The ``cloudqueue`` loggers get
    ``level``, so the outcome records of successes show at INFO. Calling it again
    reconfigures, it never adds a second handler.

    Returns the handlers that format the lines.
    """
    formatter: logging.Formatter = JSONFormatter(static) if json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s")
    root = logging.getLogger()
    ours: list[logging.Handler] = [h for h in root.handlers if isinstance(h, _Ours)]
    handlers = [h for h in root.handlers if not isinstance(h, _Ours)] or ours
    if not handlers:
        handlers = [_Ours(stream or sys.stdout)]
        root.addHandler(handlers[0])
    elif stream is not None and handlers == ours and isinstance(ours[0], _Ours):
        ours[0].setStream(stream)
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.getLogger("cloudqueue").setLevel(level)
    return handlers
