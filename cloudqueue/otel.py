"""OpenTelemetry traces and metrics for cloudqueue jobs, as one middleware.

    from cloudqueue.otel import OpenTelemetry

    telemetry = OpenTelemetry()                      # the global providers, or pass your own
    app = cq.App("shop", middleware=[telemetry])
    telemetry.watch(app)                             # queue gauges, and the queue on send spans

Traces follow OpenTelemetry's messaging conventions::

    send send_receipt        PRODUCER   around each enqueue / enqueue_many; its context
      │                                 becomes the envelope's traceparent
      └─ process send_receipt CONSUMER  around each run, a child of that context (linked to
                                        the ambient span, e.g. a Lambda invocation's, and to the
                                        trace contexts the platform delivered the message under:
                                        ``Delivery.platform_trace``), current while the job
                                        runs, ended when the outcome is settled

Metrics (attributes: ``cloudqueue.job.type``, ``messaging.destination.name``, and
``cloudqueue.reason.kind`` where there is a reason): counters ``cloudqueue.jobs.enqueued``,
``.completed``, ``.failed``, ``.retried``, ``.dead_lettered``; histograms
``cloudqueue.job.duration`` and ``cloudqueue.job.queue_latency`` (seconds); observable
gauges ``cloudqueue.queue.waiting``, ``.in_flight``, ``.delayed``, ``.dead_lettered``,
``.oldest_age`` from ``backend.stats()`` of each watched app (nothing where a figure is
unknown, never 0).

Needs the API only: ``pip install "cloudqueue[otel]"``. ``import cloudqueue`` never
imports this module.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError('cloudqueue.otel needs the OpenTelemetry API: pip install "cloudqueue[otel]" '
                      f"(importing it failed: {exc})") from exc

from . import __version__
from ._errors import Defer, EnqueueError, Skip
from .clock import parse_time
from .envelope import decode, with_traceparent
from .lifecycle import Middleware, Outcome, ReasonKind
from .logs import queue_name

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .app import App
    from .backends.base import Backend, Delivery, OutgoingMessage, QueueStats
    from .dispatch import Result, Task

__all__ = ["OpenTelemetry"]

log = logging.getLogger("cloudqueue")

#: ``messaging.system`` where the conventions name the service; cloudqueue otherwise
_SYSTEMS = {"sqs": "aws_sqs", "pubsub": "gcp_pubsub"}
#: W3C trace context as the envelope carries it (a future version may append fields)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?").fullmatch
#: spans of runs whose settle never came (a caller that runs without settling) are ended
#: once this many are open, oldest first
_OPEN_LIMIT = 10_000
#: one backend.stats() call serves every gauge of one collection
_STATS_TTL = 1.0
_FAILED_KINDS = frozenset({ReasonKind.PERMANENT, ReasonKind.EXHAUSTED})
#: seconds between looks at the global providers while they are the API's placeholders
_RECHECK = 1.0


def _records(provider: object, noop: type) -> bool | None:
    """Whether a provider records: None while it is the API's placeholder for a global
    provider not set up yet (it hands over to an SDK set later)."""
    if type(provider).__name__ in ("ProxyTracerProvider", "_ProxyMeterProvider"):
        return None  # the metrics API does not export its placeholder's class: by name
    return not isinstance(provider, noop)


def _platform(header: str) -> SpanContext | None:
    """A platform's trace header as a remote span context: W3C ``traceparent``, X-Ray
    (``Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1``) or
    ``X-Cloud-Trace-Context`` (``105445aa7843bc8bf206b12000100000/1;o=1``, the span id in
    decimal). None for anything else, or a context without a span id."""
    try:
        if header.startswith("Root=") or ";Root=" in header:
            fields = dict(part.strip().partition("=")[::2] for part in header.split(";"))
            version, stamp, unique = fields["Root"].split("-")
            if version != "1" or len(stamp) != 8 or len(unique) != 24 or len(fields["Parent"]) != 16:
                return None
            trace_id, span_id = int(stamp + unique, 16), int(fields["Parent"], 16)
            sampled = fields.get("Sampled") == "1"
        elif "/" in header:
            trace_part, _, rest = header.partition("/")
            span_part, _, options = rest.partition(";")
            if len(trace_part) != 32 or not span_part.isdigit():
                return None
            trace_id, span_id = int(trace_part, 16), int(span_part)
            sampled = options.strip() == "o=1"
        else:
            match = _TRACEPARENT(header)
            if match is None or match.group(1) == "ff":
                return None
            trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
            sampled = bool(int(match.group(4), 16) & 1)
    except (KeyError, ValueError):
        return None
    if not 0 < span_id < 2**64 or not 0 < trace_id < 2**128:
        return None
    return SpanContext(trace_id, span_id, is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT))


def _remote(traceparent: str) -> otel_context.Context | None:
    """The current context with ``traceparent``'s span as a remote parent (None when it is
    not W3C trace context: version ff, a zero id, or not the format)."""
    match = _TRACEPARENT(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or (version == "00" and len(traceparent) != 55):
        return None
    parent = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                         trace_flags=TraceFlags(int(flags, 16) & 1))
    if not parent.is_valid:
        return None
    return trace.set_span_in_context(NonRecordingSpan(parent))


class _Queue:
    """What the middleware knows of one app's queue: its name and messaging system."""

    __slots__ = ("app", "destination", "stats", "stats_at", "system")

    def __init__(self, app: App) -> None:
        self.app = app
        url = app.backend_url
        scheme = url.split("://", 1)[0] if url else app.backend.scheme
        self.system = _SYSTEMS.get(scheme, "cloudqueue")
        self.destination = queue_name(app)
        self.stats: QueueStats | None = None
        self.stats_at = float("-inf")


class OpenTelemetry(Middleware):
    """Producer and consumer spans and job metrics, following OpenTelemetry's messaging
    conventions.

    Args:
        tracer_provider: where spans go (default: the global one; the API's default
            records nothing).
        meter_provider: where metrics go (default: the global one).

    One instance may serve several apps; ``watch(app)`` adds an app's queue gauges and
    names its queue on producer spans (an app is also learnt from the first job it runs).
    Make one instance per meter provider: a second one's counters add up with the first's,
    but the provider keeps the first one's gauges only.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None) -> None:
        self._tracer = trace.get_tracer("cloudqueue", __version__, tracer_provider=tracer_provider)
        # the API alone hands out no-op tracers and meters: then a run builds no span, no
        # context and no attributes, and a settle counts nothing
        self._given = (tracer_provider, meter_provider)
        self._spans_on = self._metrics_on = False
        self._final = False  # both providers are what they are for good
        self._recheck_at = 0.0
        self._check_providers()
        meter = metrics.get_meter("cloudqueue", __version__, meter_provider=meter_provider)
        self._enqueued = meter.create_counter(
            "cloudqueue.jobs.enqueued", "{job}", "Jobs the queue accepted")
        self._completed = meter.create_counter(
            "cloudqueue.jobs.completed", "{job}", "Runs that succeeded and were acknowledged")
        self._failed = meter.create_counter(
            "cloudqueue.jobs.failed", "{job}", "Runs that raised (retried or dead-lettered after)")
        self._retried = meter.create_counter(
            "cloudqueue.jobs.retried", "{job}", "Failed runs given back to be retried")
        self._dead_lettered = meter.create_counter(
            "cloudqueue.jobs.dead_lettered", "{job}",
            "Messages moved to dead letters (poison, permanent, exhausted)")
        self._duration = meter.create_histogram(
            "cloudqueue.job.duration", "s", "How long each run of a job took")
        self._latency = meter.create_histogram(
            "cloudqueue.job.queue_latency", "s",
            "From enqueue to the start of a job's first run (a delay asked for included)")
        for name, figure, description in (
                ("waiting", "waiting", "Messages due and not received"),
                ("in_flight", "in_flight", "Messages received and not settled"),
                ("delayed", "delayed", "Messages not due yet"),
                ("dead_lettered", "dead_lettered", "Messages in dead letters")):
            meter.create_observable_gauge(f"cloudqueue.queue.{name}", [self._gauge(figure)],
                                          "{message}", description)
        meter.create_observable_gauge("cloudqueue.queue.oldest_age", [self._oldest_age], "s",
                                      "Age of the oldest message in the queue")
        self._queues: dict[int, _Queue] = {}  # by id(app)
        self._by_name: dict[str, _Queue] = {}
        self._lock = threading.Lock()
        #: id(delivery) -> a run not yet settled: its recording span, when it ended, its queue
        self._open: dict[int, tuple[Span | None, int, _Queue]] = {}
        self._attrs: dict[tuple[str | None, int, int], dict[str, str]] = {}
        self._process: dict[tuple[_Queue, str], tuple[str, dict[str, str]]] = {}  # span name, attributes

    def _check_providers(self) -> None:
        """Work out whether spans and metrics record. A provider passed in, or a global one
        set up with the SDK, is what it is for good: then this is never called again. The
        global placeholder (no SDK yet) records nothing but hands over to an SDK set later,
        so while there is one it is looked at again at most once a second: a run costs a
        clock read, and an SDK set up while jobs run takes over within a second."""
        now = time.monotonic()
        if now < self._recheck_at:
            return
        self._recheck_at = now + _RECHECK
        tracer_provider, meter_provider = self._given
        spans = _records(tracer_provider or trace.get_tracer_provider(), trace.NoOpTracerProvider)
        measures = _records(meter_provider or metrics.get_meter_provider(), metrics.NoOpMeterProvider)
        self._spans_on, self._metrics_on = bool(spans), bool(measures)
        self._final = spans is not None and measures is not None

    # -- apps ------------------------------------------------------------------------------
    def watch(self, app: App) -> App:
        """Report ``app``'s queue gauges and name its queue on producer spans; returns ``app``."""
        self._queue(app)
        return app

    def _queue(self, app: App) -> _Queue:
        queue = self._queues.get(id(app))
        if queue is None:
            with self._lock:
                queue = self._queues.get(id(app))
                if queue is None:
                    queue = self._queues[id(app)] = _Queue(app)
                    self._by_name.setdefault(app.name, queue)
        return queue

    def _sender(self, body: bytes) -> _Queue | None:
        """The watched app that wrote ``body`` (its envelope's ``source``)."""
        if len(self._queues) == 1:
            return next(iter(self._queues.values()))
        start = body.find(b'"source":"cloudqueue://')
        if start < 0:
            return None
        start += len(b'"source":"cloudqueue://')
        end = body.find(b'"', start)
        return self._by_name.get(body[start:end].decode(errors="replace"))

    def _attributes(self, job_type: str | None, queue: _Queue | None,
                    kind: ReasonKind | None = None) -> dict[str, str]:
        # by identity: the queues are kept for good and the kinds are singletons (an enum's
        # own hash and value are Python-level calls, too slow for once per settle)
        key = (job_type, id(queue), id(kind))
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = {"messaging.system": queue.system if queue else "cloudqueue"}
            if job_type:
                attrs["cloudqueue.job.type"] = job_type
            if queue is not None:
                attrs["messaging.destination.name"] = queue.destination
            if kind is not None:
                attrs["cloudqueue.reason.kind"] = kind.value
            self._attrs[key] = attrs
        return attrs

    # -- producer --------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[OutgoingMessage],
                call_next: Callable[[Sequence[OutgoingMessage]], list[str]]) -> list[str]:
        if not messages:
            return call_next(messages)
        if not self._final:
            self._check_providers()
        first = messages[0]
        if not self._spans_on and not trace.get_current_span().get_span_context().is_valid:
            # nothing records spans and no context to carry on: the messages go as they are
            if not self._metrics_on:
                return call_next(messages)
            return self._send_counted(messages, call_next, self._sender(first.body))
        types = {m.job_type for m in messages}
        job_type = first.job_type if len(types) == 1 else None
        queue = self._sender(first.body)
        attributes: dict[str, Any] = {
            "messaging.system": queue.system if queue else "cloudqueue",
            "messaging.operation.type": "send", "messaging.operation.name": "send"}
        if queue is not None:
            attributes["messaging.destination.name"] = queue.destination
        if job_type is not None:
            attributes["cloudqueue.job.type"] = job_type
        if len(messages) == 1:
            attributes["messaging.message.id"] = first.job_id
        else:
            attributes["messaging.batch.message_count"] = len(messages)
        parent = None
        if not trace.get_current_span().get_span_context().is_valid and first.body.endswith(b'"}'):
            # no span around this enqueue: a traceparent given to it is the parent
            try:
                given = decode(first.body).traceparent
            except ValueError:
                given = None
            if given:
                parent = _remote(given)
        name = f"send {job_type}" if job_type else "send"
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.PRODUCER,
                                                attributes=attributes) as span:
            ctx = span.get_span_context()
            if ctx.is_valid:
                traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
                messages = [replace(m, body=with_traceparent(m.body, traceparent)) for m in messages]
            return self._send_counted(messages, call_next, queue)

    def _send_counted(self, messages: Sequence[OutgoingMessage],
                      call_next: Callable[[Sequence[OutgoingMessage]], list[str]],
                      queue: _Queue | None) -> list[str]:
        """Send, and count what the queue accepted (also when only some of it was sent)."""
        try:
            ids = call_next(messages)
        except EnqueueError as exc:
            self._count_sent(messages, set(exc.sent), queue)
            raise
        self._count_sent(messages, None, queue)
        return ids

    def _count_sent(self, messages: Sequence[OutgoingMessage], sent: set[str] | None,
                    queue: _Queue | None) -> None:
        counts: dict[str, int] = {}
        seen: set[str] = set()
        for message in messages:
            if (sent is None or message.job_id in sent) and message.job_id not in seen:
                seen.add(message.job_id)
                counts[message.job_type] = counts.get(message.job_type, 0) + 1
        for job_type, count in counts.items():
            self._enqueued.add(count, self._attributes(job_type, queue))

    # -- consumer --------------------------------------------------------------------------
    def run(self, task: Task, call_next: Callable[[], Any]) -> Any:
        job = task.job
        queue = self._queues.get(id(job.app)) or self._queue(job.app)
        delivery = task.delivery
        if not self._final:
            self._check_providers()
        if delivery.attempt == 1 and self._metrics_on:
            try:
                waited = (job.app.clock.now() - parse_time(task.enqueued_at)).total_seconds()
            except ValueError:
                pass
            else:
                self._latency.record(max(waited, 0.0), self._attributes(job.name, queue))
        if not self._spans_on:  # no span: the envelope's traceparent still reaches enqueues
            if len(self._queues) > 1:  # the settle needs to know whose queue
                self._remember(delivery, None, queue)
            return call_next()
        parent: otel_context.Context | None = None
        links: tuple[Link, ...] | None = None
        if task.traceparent:
            parent = _remote(task.traceparent)
            ambient = trace.get_current_span().get_span_context()
            if parent is not None and ambient.is_valid:
                links = (Link(ambient),)  # e.g. the function invocation's span: linked, not the parent
        if delivery.platform_trace:
            parent, links = self._join_platform(delivery.platform_trace, parent, links)
        named = self._process.get((queue, job.name))
        if named is None:
            named = self._process[(queue, job.name)] = (f"process {job.name}", {
                "messaging.system": queue.system, "messaging.operation.type": "process",
                "messaging.operation.name": "process", "messaging.destination.name": queue.destination})
        span = self._tracer.start_span(named[0], context=parent, kind=SpanKind.CONSUMER, links=links,
                                       attributes={**named[1], "messaging.message.id": task.job_id,
                                                   "cloudqueue.job.type": job.name,
                                                   "cloudqueue.job.attempt": delivery.attempt})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return call_next()
        except BaseException as exc:
            if not isinstance(exc, (Skip, Defer)):
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            recording = span.is_recording()  # if so, ended when settled, with the outcome on it
            if not recording:
                span.end()  # sampled out: nothing will be written on it
            if recording or len(self._queues) > 1:  # the settle needs the span, or whose queue
                self._remember(delivery, span if recording else None, queue)

    def _remember(self, delivery: Delivery, span: Span | None, queue: _Queue) -> None:
        opened = self._open
        opened[id(delivery)] = (span, time.time_ns(), queue)
        if len(opened) > _OPEN_LIMIT:
            stale, end, _ = opened.pop(next(iter(opened)))
            if stale is not None:
                stale.end(end)

    @staticmethod
    def _join_platform(headers: tuple[str, ...], parent: otel_context.Context | None,
                       links: tuple[Link, ...] | None) -> tuple[otel_context.Context | None, tuple[Link, ...] | None]:
        """Join the contexts the platform delivered a message under: linked to the run's
        span; the first becomes its parent when neither the producer's context nor an
        ambient span gives one (the run then shows inside the function's request trace)."""
        ambient = trace.get_current_span().get_span_context()
        joined = list(links or ())
        seen = {ambient.span_id} if ambient.is_valid else set()
        seen.update(link.context.span_id for link in joined)
        if parent is not None:  # a platform that passes the producer's own context on
            seen.add(trace.get_current_span(parent).get_span_context().span_id)
        for header in headers:
            context = _platform(header)
            if context is None or context.span_id in seen:
                continue
            seen.add(context.span_id)
            if parent is None and not ambient.is_valid:
                parent = trace.set_span_in_context(NonRecordingSpan(context))
            else:
                joined.append(Link(context, {"cloudqueue.link": "platform"}))
        return parent, tuple(joined) or None

    def settled(self, result: Result) -> None:
        if not self._open and not self._metrics_on:
            return  # no span waits for its outcome, and nothing counts
        opened = self._open.pop(id(result.delivery), None) if self._open else None
        span, ended, queue = opened if opened is not None else (None, 0, self._only_queue())
        outcome, reason = result.outcome, result.reason
        kind = reason.kind if reason is not None else None
        if span is not None:  # the run's span: what became of it, then ended when the run did
            context = span.get_span_context()
            result.trace = (f"{context.trace_id:032x}", f"{context.span_id:016x}")  # for the log record
            span.set_attribute("cloudqueue.outcome", outcome.value)
            if kind is not None:
                span.set_attribute("cloudqueue.reason.kind", kind.value)
            if not result.applied:
                span.set_attribute("cloudqueue.settled", False)
            if outcome is Outcome.RETRY or outcome is Outcome.DEAD_LETTER:
                span.set_status(Status(StatusCode.ERROR, str(reason) if reason else outcome.value))
            span.end(ended)
        if not self._metrics_on:
            return
        if result.duration is not None:
            self._duration.record(result.duration, self._attributes(result.job_type, queue))
        if not result.applied:  # the queue delivers it again: counted when it settles
            return
        if outcome is Outcome.ACK:
            self._completed.add(1, self._attributes(result.job_type, queue))
        elif outcome is Outcome.RETRY:
            attrs = self._attributes(result.job_type, queue, kind)
            self._failed.add(1, attrs)
            self._retried.add(1, attrs)
        elif outcome is Outcome.DEAD_LETTER:
            attrs = self._attributes(result.job_type, queue, kind)
            if kind in _FAILED_KINDS:
                self._failed.add(1, attrs)
            self._dead_lettered.add(1, attrs)

    def _only_queue(self) -> _Queue | None:
        if len(self._queues) == 1:
            return next(iter(self._queues.values()))
        return None

    # -- gauges ----------------------------------------------------------------------------
    def _stats(self, queue: _Queue) -> QueueStats | None:
        now = time.monotonic()
        if now - queue.stats_at >= _STATS_TTL:
            backend: Backend = queue.app.backend
            try:
                queue.stats = backend.stats()
            except Exception as exc:
                log.warning("cloudqueue.otel: stats of %s failed (%s); its gauges report nothing "
                            "this time", backend, exc)
                queue.stats = None
            queue.stats_at = now
        return queue.stats

    def _gauge(self, figure: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for queue in list(self._queues.values()):
                stats = self._stats(queue)
                value = getattr(stats, figure) if stats is not None else None
                if value is not None:  # unknown is reported as nothing, never as 0
                    yield Observation(value, self._attributes(None, queue))
        return observe

    def _oldest_age(self, options: CallbackOptions) -> Iterable[Observation]:
        for queue in list(self._queues.values()):
            stats = self._stats(queue)
            if stats is not None and stats.oldest_age is not None:
                yield Observation(stats.oldest_age.total_seconds(), self._attributes(None, queue))
