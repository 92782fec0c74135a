"""The OpenTelemetry middleware in the Google push shims, with the Pub/Sub emulator pushing
to functions-framework: one trace from the producer's send to the function's run, counts
that match the outcomes, and the platform's incoming trace context joined (as a link
under the producer's context, as the parent where the message carries none)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.envelope import with_traceparent
from tests.conftest import missing_component, wait_for
from tests.gcp import routing
from tests.gcp.conftest import PubSubSetup, make_pubsub

from .conftest import Telemetry

pytestmark = pytest.mark.timeout(180)

#: the producer's context, as the envelope carries it
PRODUCER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: the request's own context, as Cloud Run / Cloud Functions pass it on
REQUEST = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#: the same kind of context in Google's older header: TRACE_ID/SPAN_ID(decimal);o=1
CLOUD_TRACE = "105445aa7843bc8bf206b12000100000/12345678901234567;o=1"


class Order(BaseModel):
    order_id: str


@pytest.fixture(autouse=True)
def _gcp_adapter() -> None:
    try:
        import cloudqueue_gcp  # noqa: F401
    except ImportError:
        missing_component("cloudqueue_gcp", 'install the Google adapter: pip install -e "adapters/gcp[test]"')


def _app(telemetry: Telemetry, url: str) -> cq.App:
    app = cq.App("shop", backend=url, middleware=[telemetry.middleware])
    telemetry.middleware.watch(app)
    return app




def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _push_body(data: bytes, message_id: str, subscription: str) -> bytes:
    return json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                                   "attributes": {"cq_type": "ship"}, "publishTime": "2026-11-29T00:00:00Z"},
                       "subscription": subscription, "deliveryAttempt": 1}).encode()


def _ids(traceparent: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def test_emulator_push_spans_share_a_trace_and_counts_match_the_outcomes(
        telemetry: Telemetry, emulator: Any, project: str, http_function: Any) -> None:
    import cloudqueue_gcp
    from opentelemetry.trace import SpanKind

    setup = make_pubsub(emulator.host, project, push_endpoint=http_function.url)
    app = _app(telemetry, setup.url())
    done: list[str] = []

    @app.job
    def ship(payload: Order) -> None:
        done.append(payload.order_id)

    @app.job
    def cancel(payload: Order) -> None:
        raise cq.Permanent("already shipped")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))  # the emulator sends no OIDC
    ids = ship.enqueue_many([Order(order_id="1"), Order(order_id="2")])
    cancel.enqueue(Order(order_id="3"))
    app.backend.send([cq.OutgoingMessage(body=b"not an envelope", job_id="p", job_type="x")])
    assert wait_for(lambda: len(done) == 2 and len(app.backend.dead_letters()) == 2)

    [send] = [s for s in telemetry.spans() if s.name == "send ship"]
    processes = [s for s in telemetry.spans() if s.name == "process ship"]
    assert send.kind is SpanKind.PRODUCER and len(processes) == 2
    for process in processes:
        assert process.kind is SpanKind.CONSUMER
        assert process.context.trace_id == send.context.trace_id  # one trace across the queue
        assert process.parent.span_id == send.context.span_id
        assert process.attributes["messaging.system"] == "gcp_pubsub"
        assert process.attributes["messaging.destination.name"] == setup.topic
    assert sorted(p.attributes["messaging.message.id"] for p in processes) == sorted(ids)

    kind = ("cloudqueue.job.type", "cloudqueue.reason.kind")
    assert telemetry.counts("cloudqueue.jobs.enqueued") == {"ship": 2, "cancel": 1}
    assert telemetry.counts("cloudqueue.jobs.completed") == {"ship": 2}
    assert telemetry.counts("cloudqueue.jobs.failed", kind) == {("cancel", "permanent"): 1}
    assert telemetry.counts("cloudqueue.jobs.dead_lettered", kind) == {("cancel", "permanent"): 1,
                                                                      (None, "poison"): 1}
    assert telemetry.points("cloudqueue.jobs.retried") == []


@pytest.mark.parametrize("header", ["traceparent", "X-Cloud-Trace-Context"])
def test_the_request_context_is_a_link_when_the_producer_context_is_the_parent(
        telemetry: Telemetry, http_function: Any, pubsub: PubSubSetup, header: str) -> None:
    import cloudqueue_gcp

    app = _app(telemetry, pubsub.url())

    @app.job
    def ship(payload: Order) -> None:
        pass

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = with_traceparent(ship.message(Order(order_id="1")).body, PRODUCER)
    request = REQUEST if header == "traceparent" else CLOUD_TRACE
    status = _post(http_function.url, _push_body(body, "m-1", pubsub.subscription),
                   {"Content-Type": "application/json", header: request})
    assert status == 200
    process = telemetry.span("process ship")
    assert (process.context.trace_id, process.parent.span_id) == _ids(PRODUCER)
    expected = _ids(REQUEST) if header == "traceparent" else (
        int("105445aa7843bc8bf206b12000100000", 16), 12345678901234567)
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [expected]
    assert process.links[0].context.is_remote
    assert dict(process.links[0].attributes) == {"cloudqueue.link": "platform"}


def test_a_message_without_a_producer_context_runs_inside_the_requests_trace(
        telemetry: Telemetry, http_function: Any) -> None:
    import cloudqueue_gcp

    app = _app(telemetry, "memory://otel-gcp-tasks")

    @app.job
    def ship(payload: Order) -> None:
        pass

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    headers = {"Content-Type": "application/json", "X-CloudTasks-QueueName": "jobs",
               "X-CloudTasks-TaskName": "t-1", "X-CloudTasks-TaskRetryCount": "0",
               "X-Cloud-Trace-Context": CLOUD_TRACE}
    assert _post(http_function.url, ship.message(Order(order_id="1")).body, headers) == 200
    process = telemetry.span("process ship")
    assert process.context.trace_id == int("105445aa7843bc8bf206b12000100000", 16)
    assert process.parent.span_id == 12345678901234567 and process.parent.is_remote
    assert list(process.links) == []


def test_a_cloudevents_traceparent_extension_and_the_request_header_are_both_linked(
        telemetry: Telemetry, cloudevent_function: Any, pubsub: PubSubSetup) -> None:
    import cloudqueue_gcp

    app = _app(telemetry, pubsub.url())
    done: list[str] = []

    @app.job
    def ship(payload: Order) -> None:
        done.append(payload.order_id)

    routing.set_cloudevent(cloudqueue_gcp.cloudevent_handler(app, verify=False))
    ship.enqueue(Order(order_id="1"))  # the producer's span: the parent across the queue
    sent = app.backend.receive(max_messages=1, wait=timedelta(seconds=10))
    assert len(sent) == 1
    app.backend.ack(sent[0])
    event_context = "00-11111111111111112222222222222222-3333333333333333-01"
    event = {"specversion": "1.0", "type": "google.cloud.pubsub.topic.v1.messagePublished",
             "source": f"//pubsub.googleapis.com/projects/{pubsub.project}/topics/{pubsub.topic}",
             "id": "e-1", "time": "2026-11-29T00:00:00Z", "datacontenttype": "application/json",
             "traceparent": event_context,
             "data": json.loads(_push_body(sent[0].body, "e-1", pubsub.subscription))}
    status = _post(cloudevent_function.url, json.dumps(event).encode(),
                   {"Content-Type": "application/cloudevents+json", "traceparent": REQUEST})
    assert status == 200 and done == ["1"]
    send, process = telemetry.span("send ship"), telemetry.span("process ship")
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [
        _ids(event_context), _ids(REQUEST)]
