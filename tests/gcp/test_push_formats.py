"""Every push format Pub/Sub and Cloud Tasks send, through functions-framework and the emulator."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import cloudqueue_gcp
import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.envelope import decode
from tests.conftest import wait_for

from . import routing
from .conftest import PubSubSetup, make_pubsub

pytestmark = pytest.mark.timeout(180)


class Order(BaseModel):
    order_id: str


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _unwrapped_subscription(emulator: Any, project: str, endpoint: str, *, write_metadata: bool) -> PubSubSetup:
    """A subscription pushing without the JSON wrapper (made on the emulator, then switched)."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    setup = make_pubsub(emulator.host, project, max_delivery_attempts=5)
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    try:
        subscriber.modify_push_config(request={
            "subscription": f"projects/{project}/subscriptions/{setup.subscription}",
            "push_config": {"push_endpoint": endpoint, "no_wrapper": {"write_metadata": write_metadata}}})
    finally:
        subscriber.close()
    return setup


@pytest.mark.parametrize("write_metadata", [True, False], ids=["write_metadata", "body_only"])
def test_unwrapped_push_runs_the_job_from_the_bare_envelope(
        emulator: Any, project: str, http_function: Any, write_metadata: bool) -> None:
    pubsub = _unwrapped_subscription(emulator, project, http_function.url, write_metadata=write_metadata)
    app = cq.App("shop", backend=pubsub.url())
    done: list[tuple[str, int]] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        done.append((payload.order_id, ctx.attempt))

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    charge.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    assert wait_for(lambda: len(done) == 3)
    assert sorted(done) == [("0", 1), ("1", 1), ("2", 1)]


def test_unwrapped_push_of_plain_text_is_dead_lettered_as_poison_then_acknowledged(
        emulator: Any, project: str, http_function: Any) -> None:
    pubsub = _unwrapped_subscription(emulator, project, http_function.url, write_metadata=True)
    app = cq.App("shop", backend=pubsub.url())
    statuses: list[int] = []
    handler = cloudqueue_gcp.http_handler(app, verify=False)

    def recording(request: Any) -> Any:
        answer = handler(request)
        statuses.append(answer[1])
        return answer

    routing.set_http(recording)
    app.backend.send([cq.OutgoingMessage(body=b"plain text, not an envelope", job_id="j", job_type="x")])
    assert wait_for(lambda: len(app.backend.dead_letters()) == 1)
    [letter] = app.backend.dead_letters()
    assert letter.body == b"plain text, not an envelope"
    assert letter.reason.startswith("poison")
    assert statuses == [200]  # acknowledged at once, never redelivered


def test_unwrapped_push_reads_attempt_ordering_key_and_attributes_from_the_metadata_headers(
        http_function: Any, pubsub: PubSubSetup) -> None:
    app = cq.App("shop", backend=pubsub.url())
    seen: list[tuple[int, str | None]] = []

    @app.job(retry=cq.Retry(attempts=3))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        seen.append((ctx.attempt, ctx.job_type))
        raise RuntimeError("still down")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = flaky.message(Order(order_id="o-1")).body
    headers = {"Content-Type": "application/x-www-form-urlencoded", "cq_type": "flaky",
               "x-goog-pubsub-message-id": "42", "x-goog-pubsub-subscription-name": "projects/p/subscriptions/s",
               "x-goog-pubsub-publish-time": "2026-11-29T18:43:23.662Z", "x-goog-pubsub-ordering-key": "c-1"}
    assert _post(http_function.url, body, {**headers, "x-goog-pubsub-delivery-attempt": "2"}) == 500
    assert _post(http_function.url, body, {**headers, "x-goog-pubsub-delivery-attempt": "3"}) == 200
    assert [attempt for attempt, _ in seen] == [2, 3]
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: attempt 3 of 3") and letter.job_type == "flaky"


def test_a_wrapped_body_that_is_not_json_is_poison_not_a_400(http_function: Any, pubsub: PubSubSetup) -> None:
    app = cq.App("shop", backend=pubsub.url())
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    assert _post(http_function.url, b"not json", {"Content-Type": "text/plain"}) == 200
    assert _post(http_function.url, b'{"hello": "world"}', {"Content-Type": "application/json"}) == 200
    assert sorted(letter.reason.split(":")[0] for letter in app.backend.dead_letters()) == ["poison", "poison"]


def test_a_wrapped_push_whose_data_is_not_base64_is_a_bad_request(http_function: Any) -> None:
    app = cq.App("shop", backend="memory://")
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = json.dumps({"message": {"data": "%%%", "messageId": "1"}, "subscription": "s"}).encode()
    assert _post(http_function.url, body, {"Content-Type": "application/json"}) == 400


def test_cloudevent_shim_behind_a_plain_push_counts_attempts_and_dead_letters_when_spent(
        cloudevent_function: Any, pubsub: PubSubSetup) -> None:
    # functions-framework turns a plain push into a CloudEvent without deliveryAttempt and
    # orderingKey; the shim reads them from the request, so a failing job ends.
    app = cq.App("shop", backend=pubsub.url())
    seen: list[int] = []

    @app.job(retry=cq.Retry(attempts=3))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        seen.append(ctx.attempt)
        raise RuntimeError("still down")

    routing.set_cloudevent(cloudqueue_gcp.cloudevent_handler(app, verify=False))
    data = flaky.message(Order(order_id="o-2")).body

    def push(attempt: int) -> int:
        body = {"message": {"data": base64.b64encode(data).decode(), "messageId": f"m-{attempt}",
                            "attributes": {"cq_type": "flaky"}, "orderingKey": "c-1",
                            "publishTime": "2026-11-29T00:00:00Z"},
                "subscription": f"projects/{pubsub.project}/subscriptions/{pubsub.subscription}",
                "deliveryAttempt": attempt}
        return _post(cloudevent_function.url, json.dumps(body).encode(), {"Content-Type": "application/json"})

    assert push(2) == 500
    assert push(3) == 200
    assert seen == [2, 3]
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: attempt 3 of 3") and decode(letter.body).type == "flaky"


@pytest.mark.parametrize("count", ["-5", "1.5", "abc", "+1", "99999999999"])
def test_a_task_retry_count_that_is_not_a_non_negative_integer_is_refused(http_function: Any, count: str) -> None:
    app = cq.App("shop", backend="memory://")
    runs: list[int] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    headers = {"Content-Type": "application/json", "X-CloudTasks-QueueName": "jobs",
               "X-CloudTasks-TaskName": "t-1", "X-CloudTasks-TaskRetryCount": count}
    assert _post(http_function.url, charge.message(Order(order_id="o-3")).body, headers) == 400
    assert runs == []


_DEFERRED_PUSH = """
import sys, json
from datetime import datetime, timedelta, timezone
import cloudqueue as cq
import cloudqueue_gcp
from cloudqueue import envelope
from pydantic import BaseModel

class Later(cq.Middleware):
    def run(self, task, call_next):
        raise cq.Defer(timedelta(seconds=30), "rate limited")

class Order(BaseModel):
    order_id: str

app = cq.App("shop", backend="pubsub://p-push/jobs?subscription=jobs-sub&emulator={nowhere}",
             middleware=[Later()])

@app.job
def charge(payload: Order) -> None:
    pass

class Request:
    headers = {{"x-goog-pubsub-message-id": "1", "x-goog-pubsub-subscription-name": "s"}}
    def get_data(self):  # built as the producer did, without this app's backend
        return envelope.encode(job_id="j-1", app="shop", job_type="charge", time=datetime.now(timezone.utc),
                               data={{"order_id": "o-1"}})

handler = cloudqueue_gcp.http_handler(app, verify=False)
print(json.dumps([handler(Request())[1],
                  sorted(m for m in sys.modules if m.startswith(("google.cloud.", "google.api_core", "grpc")))]))
"""


def test_a_push_shim_on_a_pull_url_never_looks_at_the_subscription() -> None:
    # a deferred push is answered non-2xx; settling it reads the backend's capabilities, which
    # for a pull URL look the subscription up on first use: not on the push path
    import subprocess
    import sys

    from tests.conftest import free_port

    code = _DEFERRED_PUSH.format(nowhere=f"127.0.0.1:{free_port()}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    status, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 500
    assert loaded == []
