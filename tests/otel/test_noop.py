"""With the OpenTelemetry API alone (no SDK, or its no-op providers) the middleware builds
no span and counts nothing, yet the trace context still travels from job to job; an SDK
set up after the middleware was made takes over."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.envelope import decode, with_traceparent

from .conftest import needs_sdk

GIVEN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Order(BaseModel):
    order_id: str


def test_no_op_providers_build_nothing_and_the_trace_still_travels() -> None:
    needs_sdk()
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from cloudqueue.otel import OpenTelemetry

    telemetry = OpenTelemetry(NoOpTracerProvider(), NoOpMeterProvider())
    backend = MemoryBackend(name="orders")
    app = cq.App("shop", backend=backend, middleware=[telemetry])

    @app.job
    def notify(payload: Order) -> None:
        pass

    @app.job
    def ship(payload: Order) -> None:
        notify.enqueue(payload)

    body = ship.message(Order(order_id="1")).body  # as a traced producer sent it
    backend.send([cq.OutgoingMessage(body=with_traceparent(body, GIVEN), job_id="j1", job_type="ship")])
    app.drain(max_jobs=1)
    assert telemetry._final and not telemetry._spans_on and not telemetry._metrics_on
    assert telemetry._open == {}  # no span waits for a settle
    [child] = backend.receive(max_messages=10)
    assert decode(child.body).traceparent == GIVEN  # the child carries its parent's trace


def test_an_sdk_set_up_after_the_middleware_takes_over() -> None:
    needs_sdk()
    code = textwrap.dedent("""
        import cloudqueue as cq, cloudqueue.otel
        from pydantic import BaseModel
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        class Order(BaseModel):
            order_id: str

        telemetry = cloudqueue.otel.OpenTelemetry()       # the global placeholders
        app = cq.App("shop", backend="memory://", middleware=[telemetry])

        @app.job
        def ship(payload: Order) -> None:
            pass

        ship.enqueue(Order(order_id="1"))
        app.drain()
        print("before", telemetry._spans_on, telemetry._final)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        telemetry._recheck_at = 0.0                         # as if a second had passed
        ship.enqueue(Order(order_id="2"))
        app.drain()
        print("after", telemetry._spans_on, sorted(s.name for s in exporter.get_finished_spans()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["before False False", "after True ['process ship', 'send ship']"]
