"""The push shim for an app with several queues: each Pub/Sub push settles against the
queue its subscription belongs to (emulator + functions-framework); a push from a
subscription that is none of the app's queues is refused and runs nothing."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import cloudqueue_gcp
import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.conftest import wait_for

from . import routing
from .conftest import make_pubsub
from .test_push_formats import _post

pytestmark = pytest.mark.timeout(180)


class Order(BaseModel):
    order_id: str


def _app(emulator: Any, endpoint: str) -> tuple[cq.App, list[str]]:
    critical = make_pubsub(emulator.host, f"crit-{uuid.uuid4().hex[:8]}", push_endpoint=endpoint)
    default = make_pubsub(emulator.host, f"dflt-{uuid.uuid4().hex[:8]}", push_endpoint=endpoint)
    app = cq.App("shop", queues={"critical": critical.url(), "default": default.url()})
    ran: list[str] = []

    @app.job(queue="critical")
    def page(payload: Order) -> None:
        ran.append(f"page {payload.order_id}")
        raise cq.Permanent("nobody on call")

    @app.job
    def ship(payload: Order) -> None:
        ran.append(f"ship {payload.order_id}")

    return app, ran


def test_each_push_settles_against_the_queue_of_its_subscription(emulator: Any, http_function: Any) -> None:
    app, ran = _app(emulator, http_function.url)
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    app.get_job("page").enqueue(Order(order_id="1"))
    app.get_job("ship").enqueue(Order(order_id="2"))
    assert wait_for(lambda: sorted(ran) == ["page 1", "ship 2"])
    assert wait_for(lambda: len(app.queue("critical").dead_letters()) == 1)
    [letter] = app.queue("critical").dead_letters()
    assert letter.kind is cq.ReasonKind.PERMANENT
    assert app.queue("default").dead_letters() == []


def test_a_push_from_an_unknown_subscription_is_refused_and_runs_nothing(emulator: Any,
                                                                          http_function: Any) -> None:
    app, ran = _app(emulator, "http://127.0.0.1:9/unused")
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = app.get_job("ship").message(Order(order_id="1")).body
    push = {"message": {"data": base64.b64encode(body).decode(), "messageId": "1"},
            "subscription": "projects/elsewhere/subscriptions/jobs-sub", "deliveryAttempt": 1}
    assert _post(http_function.url, json.dumps(push).encode(), {"Content-Type": "application/json"}) == 500
    assert ran == []
    with pytest.raises(cloudqueue_gcp.handlers.UnknownSource, match=r"subscription 'projects/elsewhere/"
                                                                    r"subscriptions/jobs-sub'.*critical \("):
        cloudqueue_gcp.handlers.QueueRoutes(app).backend("pubsub", push["subscription"])  # type: ignore[arg-type]
