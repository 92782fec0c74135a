"""The outcome log record carries the trace: with the OpenTelemetry middleware, the ids of
the job's own process span; outside any span, none."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend

from .conftest import Telemetry


class Order(BaseModel):
    order_id: str


def test_each_outcome_record_names_the_process_span_of_its_run(
        telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    app = cq.App("shop", backend=MemoryBackend(name="orders"), middleware=[telemetry.middleware])

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def ship(payload: Order) -> None:
        raise TimeoutError("carrier")

    ship.enqueue(Order(order_id="1"))
    with caplog.at_level(logging.INFO, logger="cloudqueue"):
        app.drain()
    records = [r for r in caplog.records if r.name == "cloudqueue.jobs"]
    assert [r.outcome for r in records] == ["retry", "dead_letter"]  # type: ignore[attr-defined]
    spans = sorted((s for s in telemetry.spans() if s.name == "process ship"),
                   key=lambda s: s.attributes["cloudqueue.job.attempt"])
    assert [(r.trace_id, r.span_id) for r in records] == [  # type: ignore[attr-defined]
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans]
    assert len({r.trace_id for r in records}) == 1  # type: ignore[attr-defined]
    assert all(r.queue == "orders" for r in records)  # type: ignore[attr-defined]


def test_a_record_logged_inside_a_span_carries_its_ids_in_json(telemetry: Telemetry) -> None:
    import json

    from cloudqueue.logs import JSONFormatter

    tracer = telemetry.middleware._tracer
    with tracer.start_as_current_span("invoke") as span:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
        doc = json.loads(JSONFormatter().format(record))
    context = span.get_span_context()
    assert (doc["trace_id"], doc["span_id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
