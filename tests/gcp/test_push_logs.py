"""The Google push shim logs each outcome once (the dispatcher's record, nothing of its own
about the job), and tells buffering middleware to write once per request."""

from __future__ import annotations

import logging
from typing import Any

import cloudqueue_gcp
import pytest
from pydantic import BaseModel

import cloudqueue as cq

from . import routing
from .test_pubsub import _post, _push_body


def _pushed(data: bytes, message_id: str) -> bytes:
    """A wrapped Pub/Sub push of ``data`` as delivery attempt 1, with its own message id."""
    return _push_body(data, 1).replace(b'"messageId": "123"', f'"messageId": "{message_id}"'.encode())


class Order(BaseModel):
    order_id: str


class Flushes(cq.Middleware):
    def __init__(self) -> None:
        self.count = 0

    def flush(self) -> None:
        self.count += 1


def test_each_pushed_outcome_is_logged_once_and_each_request_flushes_once(
        http_function: Any, caplog: pytest.LogCaptureFixture) -> None:
    flushes = Flushes()
    app = cq.App("shop", backend="memory://", middleware=[flushes])

    @app.job(retry=cq.Retry(attempts=3))
    def charge(payload: Order) -> None:
        if payload.order_id == "bad":
            raise TimeoutError("processor timed out")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    ok = charge.message(Order(order_id="ok")).body
    bad = charge.message(Order(order_id="bad")).body
    with caplog.at_level(logging.INFO, logger="cloudqueue"):
        assert _post(http_function.url, _pushed(ok, "m-1")) == 200
        assert _post(http_function.url, _pushed(bad, "m-2")) == 500
    records = [r for r in caplog.records if r.name == "cloudqueue.jobs"]
    assert sorted((r.job_type or "?", r.outcome, r.reason_kind) for r in records) == [  # type: ignore[attr-defined]
        ("charge", "ack", None), ("charge", "retry", "failed")]
    assert sorted(r.message_id for r in records) == ["m-1", "m-2"]  # type: ignore[attr-defined]
    assert all(r.attempt == 1 and r.settled for r in records)  # type: ignore[attr-defined]
    others = [r.getMessage() for r in caplog.records if r.name != "cloudqueue.jobs" and r.name.startswith("cloudqueue")]
    assert not [m for m in others if "charge" in m], others
    assert flushes.count == 2
