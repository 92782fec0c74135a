"""The OpenTelemetry middleware on the memory backend, read through the SDK's in-memory
exporter and metric reader: one trace across the queue, spans nested under the job, and
counts that match what happened."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock

from .conftest import Telemetry, needs_sdk

GIVEN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Order(BaseModel):
    order_id: str


def _app(telemetry: Telemetry, **options: Any) -> cq.App:
    app = cq.App("shop", backend=MemoryBackend(name="orders", **options),
                 middleware=[telemetry.middleware])
    telemetry.middleware.watch(app)
    return app


def test_producer_and_consumer_spans_of_one_job_share_a_trace_across_the_queue(
        telemetry: Telemetry) -> None:
    from opentelemetry.trace import SpanKind

    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        pass

    job_id = ship.enqueue(Order(order_id="1"))
    assert app.drain().succeeded == 1

    send, process = telemetry.span("send ship"), telemetry.span("process ship")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id  # a child of the creation context
    assert dict(send.attributes) == {
        "messaging.system": "cloudqueue", "messaging.operation.type": "send",
        "messaging.operation.name": "send", "messaging.destination.name": "orders",
        "messaging.message.id": job_id, "cloudqueue.job.type": "ship"}
    assert dict(process.attributes) == {
        "messaging.system": "cloudqueue", "messaging.operation.type": "process",
        "messaging.operation.name": "process", "messaging.destination.name": "orders",
        "messaging.message.id": job_id, "cloudqueue.job.type": "ship", "cloudqueue.job.attempt": 1,
        "cloudqueue.outcome": "ack"}


def test_the_worker_joins_the_trace_of_each_job(telemetry: Telemetry) -> None:
    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        pass

    for n in range(6):
        ship.enqueue(Order(order_id=str(n)))
    stats = app.worker(concurrency=3).run(until_empty=True)
    assert stats.succeeded == 6
    sends = {s.attributes["messaging.message.id"]: s for s in telemetry.spans() if s.name == "send ship"}
    processes = [s for s in telemetry.spans() if s.name == "process ship"]
    assert len(sends) == len(processes) == 6
    for process in processes:
        send = sends[process.attributes["messaging.message.id"]]
        assert (process.context.trace_id, process.parent.span_id) == (send.context.trace_id,
                                                                      send.context.span_id)
    assert telemetry.counts("cloudqueue.jobs.completed") == {"ship": 6}


def test_spans_and_enqueues_inside_a_job_nest_under_its_process_span(telemetry: Telemetry) -> None:
    from opentelemetry import trace

    tracer = telemetry.middleware._tracer
    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        with tracer.start_as_current_span("pack parcel"):
            notify.enqueue(Order(order_id=payload.order_id))
        assert trace.get_current_span().name == "process ship"  # type: ignore[attr-defined]

    @app.job
    def notify(payload: Order) -> None:
        pass

    ship.enqueue(Order(order_id="1"))
    assert app.drain().succeeded == 2
    names = {s.name: s for s in telemetry.spans()}
    chain = ["send ship", "process ship", "pack parcel", "send notify", "process notify"]
    assert len({names[n].context.trace_id for n in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert names[child].parent.span_id == names[parent].context.span_id, (parent, child)


def test_counts_match_the_outcomes_retried_then_succeeded_dead_lettered_and_poison(
        telemetry: Telemetry) -> None:
    clock = FakeClock()
    app = _app(telemetry, clock=clock)

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=10))))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        if payload.order_id == "flaky" and ctx.attempt == 1:
            raise TimeoutError("processor timed out")
        if payload.order_id == "broken":
            raise RuntimeError("card declined")

    @app.job
    def cancel(payload: Order) -> None:
        raise cq.Permanent("already shipped")

    for order in ("ok", "flaky", "broken"):
        charge.enqueue(Order(order_id=order))
    cancel.enqueue(Order(order_id="1"))
    app.backend.send([cq.OutgoingMessage(body=b"not json", job_id="p1", job_type="charge")])
    report = app.drain(follow_delays=True)
    assert (report.succeeded, report.retried, report.dead_lettered) == (2, 3, 3)

    assert telemetry.counts("cloudqueue.jobs.enqueued") == {"charge": 3, "cancel": 1}
    assert telemetry.counts("cloudqueue.jobs.completed") == {"charge": 2}
    kind = ("cloudqueue.job.type", "cloudqueue.reason.kind")
    assert telemetry.counts("cloudqueue.jobs.retried", kind) == {("charge", "failed"): 3}
    assert telemetry.counts("cloudqueue.jobs.failed", kind) == {
        ("charge", "failed"): 3, ("charge", "exhausted"): 1, ("cancel", "permanent"): 1}
    assert telemetry.counts("cloudqueue.jobs.dead_lettered", kind) == {
        ("charge", "exhausted"): 1, ("cancel", "permanent"): 1, (None, "poison"): 1}
    for attrs, _ in telemetry.points("cloudqueue.jobs.dead_lettered"):
        assert attrs["messaging.destination.name"] == "orders"
    runs = telemetry.points("cloudqueue.job.duration")
    assert sum(p.count for _, p in runs) == 7  # every run: 1 ok, 2 flaky, 3 broken, 1 cancel
    # the poison never ran: no span; each run has one, its outcome and reason on it
    outcomes = sorted((s.attributes["cloudqueue.outcome"], s.attributes.get("cloudqueue.reason.kind"))
                      for s in telemetry.spans() if s.name.startswith("process"))
    assert outcomes == sorted([("ack", None), ("retry", "failed"), ("ack", None), ("retry", "failed"),
                               ("retry", "failed"), ("dead_letter", "exhausted"),
                               ("dead_letter", "permanent")])


def test_a_failed_run_records_the_exception_and_an_error_status(telemetry: Telemetry) -> None:
    from opentelemetry.trace import StatusCode

    app = _app(telemetry)

    @app.job(retry=cq.Retry(attempts=1))
    def ship(payload: Order) -> None:
        raise ValueError(f"no address for {payload.order_id}")

    ship.enqueue(Order(order_id="7"))
    app.drain()
    span = telemetry.span("process ship")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "exhausted: attempt 1 of 1 failed: ValueError: no address for 7"
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "no address for 7"
    assert span.attributes["error.type"] == "ValueError"


def test_queue_latency_runs_from_enqueue_to_the_first_run_on_the_apps_clock(telemetry: Telemetry) -> None:
    clock = FakeClock()
    app = _app(telemetry, clock=clock)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(minutes=5))))
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        if ctx.attempt == 1:
            raise TimeoutError

    ship.enqueue(Order(order_id="1"))
    clock.advance(timedelta(seconds=30))
    app.drain(follow_delays=True)
    [(attrs, point)] = telemetry.points("cloudqueue.job.queue_latency")
    assert (point.count, point.sum) == (1, 30.0)  # the retry's wait is backoff, not queueing
    assert attrs == {"messaging.system": "cloudqueue", "cloudqueue.job.type": "ship",
                     "messaging.destination.name": "orders"}


def test_queue_gauges_report_what_stats_says(telemetry: Telemetry) -> None:
    clock = FakeClock()
    app = _app(telemetry, clock=clock)

    @app.job
    def ship(payload: Order) -> None:
        pass

    ship.enqueue(Order(order_id="1"))
    ship.enqueue(Order(order_id="2"), delay=timedelta(hours=1))
    clock.advance(timedelta(seconds=12))
    app.backend.receive(max_messages=1)
    ship.enqueue(Order(order_id="3"))
    gauges = {name: [(a, p.value) for a, p in telemetry.points(f"cloudqueue.queue.{name}")]
              for name in ("waiting", "in_flight", "delayed", "dead_lettered", "oldest_age")}
    where = {"messaging.system": "cloudqueue", "messaging.destination.name": "orders"}
    assert gauges == {"waiting": [(where, 1)], "in_flight": [(where, 1)], "delayed": [(where, 1)],
                      "dead_lettered": [(where, 0)], "oldest_age": [(where, 12.0)]}


def test_a_traceparent_given_to_enqueue_is_the_parent_of_its_send_span(telemetry: Telemetry) -> None:
    app = _app(telemetry)

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        seen.append(ctx.traceparent)

    seen: list[str | None] = []
    ship.enqueue(Order(order_id="1"), traceparent=GIVEN)
    app.drain()
    send, process = telemetry.span("send ship"), telemetry.span("process ship")
    assert f"{send.context.trace_id:032x}" == GIVEN.split("-")[1]
    assert f"{send.parent.span_id:016x}" == GIVEN.split("-")[2]
    assert seen == [f"00-{send.context.trace_id:032x}-{send.context.span_id:016x}-01"]
    assert process.parent.span_id == send.context.span_id


def test_enqueue_many_is_one_send_span_that_every_message_joins(telemetry: Telemetry) -> None:
    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        pass

    ship.enqueue_many([Order(order_id=str(n)) for n in range(4)])
    app.drain()
    send = telemetry.span("send ship")
    assert send.attributes["messaging.batch.message_count"] == 4
    assert "messaging.message.id" not in send.attributes
    processes = [s for s in telemetry.spans() if s.name == "process ship"]
    assert len(processes) == 4
    assert {(p.context.trace_id, p.parent.span_id) for p in processes} == {
        (send.context.trace_id, send.context.span_id)}
    assert telemetry.counts("cloudqueue.jobs.enqueued") == {"ship": 4}


def test_a_skip_from_an_inner_middleware_ends_the_span_as_skipped_not_as_an_error(
        telemetry: Telemetry) -> None:
    from opentelemetry.trace import StatusCode

    class SeenBefore(cq.Middleware):
        def run(self, task: cq.Task, call_next: Any) -> Any:
            raise cq.Skip("completed before")

    app = cq.App("shop", backend=MemoryBackend(name="orders"),
                 middleware=[telemetry.middleware, SeenBefore()])

    @app.job
    def ship(payload: Order) -> None:
        raise AssertionError("skipped jobs do not run")

    ship.enqueue(Order(order_id="1"))
    assert app.drain().skipped == 1
    span = telemetry.span("process ship")
    assert span.attributes["cloudqueue.outcome"] == "skip"
    assert span.attributes["cloudqueue.reason.kind"] == "skipped"
    assert span.status.status_code is StatusCode.UNSET and not span.events
    assert telemetry.points("cloudqueue.jobs.completed") == []


def test_with_the_apis_no_op_providers_jobs_run_and_the_given_trace_passes_through() -> None:
    needs_sdk()
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from cloudqueue.otel import OpenTelemetry

    app = cq.App("shop", backend="memory://",
                 middleware=[OpenTelemetry(NoOpTracerProvider(), NoOpMeterProvider())])

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        seen.append(ctx.traceparent)

    seen: list[str | None] = []
    ship.enqueue(Order(order_id="1"), traceparent=GIVEN)
    ship.enqueue(Order(order_id="2"))
    assert app.drain().succeeded == 2
    assert seen == [GIVEN, None]


def test_import_cloudqueue_loads_no_opentelemetry() -> None:
    code = ("import sys, cloudqueue as cq\n"
            "app = cq.App('shop', backend='memory://')\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_the_extra_importing_cloudqueue_otel_says_what_to_install() -> None:
    code = ("import sys\nsys.modules['opentelemetry'] = None  # as if not installed\n"
            "import cloudqueue.otel")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert 'ImportError: cloudqueue.otel needs the OpenTelemetry API: pip install "cloudqueue[otel]"' \
        in done.stderr


@pytest.mark.parametrize("trace", [None, GIVEN])
def test_an_app_seen_only_by_its_jobs_is_learnt_from_the_first_run(telemetry: Telemetry,
                                                                   trace: str | None) -> None:
    queue = f"parcels-{uuid.uuid4().hex[:8]}"
    app = cq.App("shop", backend=f"memory://{queue}", middleware=[telemetry.middleware])

    @app.job
    def ship(payload: Order) -> None:
        pass

    ship.enqueue(Order(order_id="1"), traceparent=trace)
    app.drain()
    ship.enqueue(Order(order_id="2"))
    sends = [s for s in telemetry.spans() if s.name == "send ship"]
    assert [s.attributes.get("messaging.destination.name") for s in sends] == [None, queue]
    assert telemetry.span("process ship").attributes["messaging.destination.name"] == queue


@pytest.mark.parametrize("consumer", ["drain", "worker"])
def test_an_async_job_runs_inside_its_process_span(telemetry: Telemetry, consumer: str) -> None:
    from opentelemetry import trace

    app = _app(telemetry)
    current: list[str] = []

    @app.job
    async def ship(payload: Order) -> None:
        current.append(trace.get_current_span().name)  # type: ignore[attr-defined]

    ship.enqueue(Order(order_id="1"))
    try:
        if consumer == "drain":
            app.drain()
        else:
            app.worker(concurrency=1).run(until_empty=True)
    finally:
        app.close()  # the event loop async jobs ran on
    assert current == ["process ship"]


@pytest.mark.parametrize("tracing", ["recording", "no-op"])
def test_one_middleware_serving_two_apps_names_each_ones_queue(telemetry: Telemetry, tracing: str) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    from cloudqueue.otel import OpenTelemetry

    middleware = telemetry.middleware
    if tracing == "no-op":  # metrics only: each count still names its own app's queue
        middleware = OpenTelemetry(NoOpTracerProvider(), telemetry.meter_provider)
    apps = []
    for queue in ("orders", "mail"):
        app = cq.App(f"shop-{queue}", backend=MemoryBackend(name=queue), middleware=[middleware])
        middleware.watch(app)

        @app.job(name="ship", retry=cq.Retry(attempts=1))
        def ship(payload: Order) -> None:
            if payload.order_id == "mail":
                raise RuntimeError("mail server down")

        app.enqueue("ship", {"order_id": queue})
        apps.append(app)
    for app in apps:
        app.drain()
    where = "messaging.destination.name"
    assert telemetry.counts("cloudqueue.jobs.enqueued", where) == {"orders": 1, "mail": 1}
    assert telemetry.counts("cloudqueue.jobs.completed", where) == {"orders": 1}
    assert telemetry.counts("cloudqueue.jobs.dead_lettered", where) == {"mail": 1}
    if tracing == "recording":  # (a second instance on one meter provider gets no gauges of its own)
        dead = {a[where]: p.value for a, p in telemetry.points("cloudqueue.queue.dead_lettered")}
        assert dead == {"orders": 0, "mail": 1}
        sends = {s.attributes[where] for s in telemetry.spans() if s.name == "send ship"}
        processes = {s.attributes[where] for s in telemetry.spans() if s.name == "process ship"}
        assert sends == processes == {"orders", "mail"}


@pytest.mark.parametrize("carried", [
    "garbage", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"])
def test_a_traceparent_that_is_not_w3c_trace_context_starts_a_new_trace(telemetry: Telemetry,
                                                                         carried: str) -> None:
    from cloudqueue.envelope import with_traceparent

    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        pass

    message = ship.message(Order(order_id="1"))
    app.backend.send([cq.OutgoingMessage(body=with_traceparent(message.body, carried),
                                         job_id=message.job_id, job_type="ship")])
    assert app.drain().succeeded == 1
    process = telemetry.span("process ship")
    assert process.parent is None
    assert f"{process.context.trace_id:032x}" != GIVEN.split("-")[1]


def test_a_later_version_of_trace_context_is_read_by_its_version_00_fields(telemetry: Telemetry) -> None:
    from cloudqueue.envelope import with_traceparent

    app = _app(telemetry)

    @app.job
    def ship(payload: Order) -> None:
        pass

    message = ship.message(Order(order_id="1"))
    later = "01" + GIVEN[2:] + "-future"
    app.backend.send([cq.OutgoingMessage(body=with_traceparent(message.body, later),
                                         job_id=message.job_id, job_type="ship")])
    app.drain()
    process = telemetry.span("process ship")
    assert (f"{process.context.trace_id:032x}", f"{process.parent.span_id:016x}") == tuple(GIVEN.split("-")[1:3])
