"""The Pub/Sub backend, pull worker and push shims, against Google's Pub/Sub emulator."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import cloudqueue_gcp
import pytest
from cloudqueue_gcp.pubsub import PubSubBackend
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends import from_url
from cloudqueue.envelope import decode
from tests.conftest import wait_for

from . import routing
from .conftest import PubSubSetup, make_pubsub

pytestmark = pytest.mark.timeout(180)


class Order(BaseModel):
    order_id: str


def _app(pubsub: PubSubSetup, **options: str) -> cq.App:
    return cq.App("shop", backend=pubsub.url(**options))




def test_publish_carries_the_envelope_the_job_type_and_the_key_as_attributes(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)

    @app.job
    def charge(payload: Order) -> None: ...

    job_id = charge.enqueue(Order(order_id="o-1"), idempotency_key="charge-o-1")
    [delivery] = app.backend.receive(max_messages=10, wait=timedelta(seconds=5))
    assert decode(delivery.body).id == job_id
    assert delivery.attributes["cq_type"] == "charge"
    assert delivery.attributes["cq_key"] == "charge-o-1"
    assert delivery.attempt == 1  # the subscription has a dead-letter policy: Pub/Sub counts
    app.backend.ack(delivery)


def test_ordering_key_is_published_when_the_subscription_keeps_order(emulator: Any, project: str) -> None:
    pubsub = make_pubsub(emulator.host, project, max_delivery_attempts=None)
    app = _app(pubsub, ordering="true")

    @app.job
    def step(payload: Order) -> None: ...

    for n in range(3):
        step.enqueue(Order(order_id=str(n)), ordering_key="customer-1")
    received = app.backend.receive(max_messages=10, wait=timedelta(seconds=5))
    assert [d.ordering_key for d in received] == ["customer-1"] * 3
    assert [decode(d.body).data["order_id"] for d in received] == ["0", "1", "2"]


def test_enqueue_many_uses_the_batching_publisher(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    done: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        done.append(payload.order_id)

    ids = charge.enqueue_many([Order(order_id=str(n)) for n in range(50)])
    assert len(set(ids)) == 50
    report = app.drain()
    assert sorted(done, key=int) == [str(n) for n in range(50)]
    assert report.succeeded == 50


def test_a_delayed_enqueue_is_refused_because_pubsub_cannot_delay(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)

    @app.job
    def remind(payload: Order) -> None: ...

    with pytest.raises(cq.UnsupportedFeature, match="delay"):
        remind.enqueue(Order(order_id="o-2"), delay=timedelta(minutes=5))


def test_pull_worker_runs_jobs_with_flow_control_and_stops_gracefully(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    running = 0
    peak = 0
    done: list[str] = []
    lock = threading.Lock()

    @app.job
    def charge(payload: Order) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.2)
        with lock:
            running -= 1
            done.append(payload.order_id)

    charge.enqueue_many([Order(order_id=str(n)) for n in range(12)])
    worker = app.worker(concurrency=3, poll_wait=timedelta(seconds=1), handle_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert wait_for(lambda: len(done) == 12)
    worker.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert sorted(done, key=int) == [str(n) for n in range(12)]
    assert 1 <= peak <= 3
    assert app.backend.receive(max_messages=10) == []  # every one acknowledged


def test_graceful_stop_finishes_the_running_job_and_gives_the_rest_back_at_once(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    started = threading.Event()
    release = threading.Event()
    done: list[str] = []

    @app.job
    def slow(payload: Order) -> None:
        started.set()
        release.wait(30)
        done.append(payload.order_id)

    slow.enqueue_many([Order(order_id=str(n)) for n in range(5)])
    worker = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(30)
    worker.stop()
    release.set()
    thread.join(timeout=30)
    assert len(done) == 1  # the running job finished, nothing new started
    # the other four are available now, not after the 10 s ack deadline of a held message
    rest: dict[str, Any] = {}
    deadline = time.monotonic() + 5
    while len(rest) < 4 and time.monotonic() < deadline:
        for delivery in app.backend.receive(max_messages=10, wait=timedelta(seconds=1)):
            rest[decode(delivery.body).data["order_id"]] = delivery
    assert len(rest) == 4 and set(rest).isdisjoint(done)


def test_heartbeat_extends_the_ack_deadline_of_a_long_job(emulator: Any, project: str) -> None:
    pubsub = make_pubsub(emulator.host, project, ack_deadline=10)
    app = _app(pubsub)
    started = threading.Event()
    finished = threading.Event()
    attempts: list[int] = []

    @app.job
    def long_job(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        started.set()
        finished.wait(30)  # held until the other consumer has polled past the 10 s ack deadline

    long_job.enqueue(Order(order_id="o-3"))
    worker = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False,
                        visibility_timeout=timedelta(seconds=10), heartbeat=timedelta(seconds=1))
    thread = threading.Thread(target=worker.run)
    thread.start()
    # Poll only once the worker holds the message: polling earlier races the worker for it
    # (on a loaded machine the other consumer could take it first, which proves nothing).
    assert started.wait(60)
    other = from_url(pubsub.url())
    redelivered = []
    deadline = time.monotonic() + 13
    while time.monotonic() < deadline and not redelivered:
        redelivered = other.receive(max_messages=1, wait=timedelta(seconds=1))
    finished.set()
    worker.stop()
    thread.join(timeout=30)
    assert redelivered == []
    assert attempts == [1]


def test_retry_holds_the_message_for_the_jobs_backoff_and_counts_the_attempt(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=2))))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("try again")

    flaky.enqueue(Order(order_id="o-4"))
    assert app.drain().retried == 1
    assert app.drain().processed == 0  # held for the backoff
    time.sleep(2.5)
    assert app.drain().succeeded == 1
    assert attempts == [1, 2]


def test_subscription_dead_letter_policy_moves_a_message_after_max_delivery_attempts(
        emulator: Any, project: str) -> None:
    pubsub = make_pubsub(emulator.host, project, max_delivery_attempts=5)
    backend = from_url(pubsub.url())
    backend.send([cq.OutgoingMessage(body=b'{"a consumer": "that never acks"}', job_id="j", job_type="x")])
    nacks = 0
    while nacks < 5:
        for delivery in backend.receive(max_messages=1, wait=timedelta(seconds=2)):
            assert delivery.attempt == nacks + 1
            backend.release(delivery)
            nacks += 1
    assert backend.receive(max_messages=1, wait=timedelta(seconds=1)) == []
    assert wait_for(lambda: len(backend.dead_letters()) == 1, timeout=10)
    [letter] = backend.dead_letters()
    assert letter.body == b'{"a consumer": "that never acks"}'
    assert letter.reason.startswith("exhausted: Pub/Sub gave up after 5 deliveries")
    assert letter.attempts == 5
    assert backend.redrive() == 1
    [again] = backend.receive(max_messages=1, wait=timedelta(seconds=5))
    assert again.body == b'{"a consumer": "that never acks"}' and again.attempt == 1
    assert not any(k.startswith("CloudPubSubDeadLetter") for k in again.attributes)
    assert backend.dead_letters() == []


def test_permanent_and_poison_are_published_to_the_dead_letter_topic_and_redrive_puts_them_back(
        pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    refuse = [True]
    done: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        if refuse[0]:
            raise cq.Permanent("card blocked")
        done.append(payload.order_id)

    job_id = charge.enqueue(Order(order_id="o-5"))
    app.backend.send([cq.OutgoingMessage(body=b"garbage", job_id="g", job_type="?")])
    report = app.drain()
    assert report.dead_lettered == 2
    letters = {letter.reason.split(":")[0]: letter for letter in app.backend.dead_letters()}
    assert set(letters) == {"permanent", "poison"}
    assert decode(letters["permanent"].body).id == job_id
    assert letters["permanent"].job_type == "charge"
    refuse[0] = False
    assert app.backend.redrive([letters["permanent"].message_id]) == 1
    assert app.drain().succeeded == 1
    assert done == ["o-5"]
    assert [letter.reason.split(":")[0] for letter in app.backend.dead_letters()] == ["poison"]
    assert app.backend.purge_dead_letters() == 1
    assert app.backend.dead_letters() == []


def test_without_a_dead_letter_topic_a_failed_job_is_not_acknowledged(emulator: Any, project: str,
                                                                      caplog: Any) -> None:
    pubsub = make_pubsub(emulator.host, project)
    app = cq.App("shop", backend=f"pubsub://{project}/{pubsub.topic}?subscription={pubsub.subscription}"
                                 f"&emulator={emulator.host}")

    @app.job
    def charge(payload: Order) -> None:
        raise cq.Permanent("no")

    charge.enqueue(Order(order_id="o-6"))
    [delivery] = app.backend.receive(max_messages=1, wait=timedelta(seconds=5))
    result = app.dispatcher.process(delivery)
    assert app.dispatcher.settle(app.backend, result) is False  # kept: Pub/Sub delivers it again
    assert not result.applied and "dead_letter_topic" in caplog.text


def _push_body(data: bytes, attempt: int | None, **attributes: str) -> bytes:
    body: dict[str, Any] = {"message": {"data": base64.b64encode(data).decode(), "messageId": "123",
                                        "attributes": attributes, "publishTime": "2026-01-01T00:00:00Z"},
                            "subscription": "projects/p/subscriptions/s"}
    if attempt is not None:
        body["deliveryAttempt"] = attempt
    return json.dumps(body).encode()


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_emulator_push_runs_jobs_in_the_function(emulator: Any, project: str, http_function: Any) -> None:
    pubsub = make_pubsub(emulator.host, project, push_endpoint=http_function.url)
    app = _app(pubsub)
    done: list[tuple[str, int]] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        done.append((payload.order_id, ctx.attempt))

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))  # the emulator sends no OIDC
    charge.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    assert wait_for(lambda: len(done) == 3)
    assert sorted(done) == [("0", 1), ("1", 1), ("2", 1)]


def test_emulator_push_retries_failures_and_its_dead_letter_policy_ends_them(
        emulator: Any, project: str, http_function: Any) -> None:
    # The emulator's push body carries no deliveryAttempt (tests/events/gcp/pubsub_push_emulator.json),
    # so every push is attempt 1 and the subscription's dead-letter policy is what stops it.
    pubsub = make_pubsub(emulator.host, project, push_endpoint=http_function.url, max_delivery_attempts=5)
    app = _app(pubsub)
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=2))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("still down")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    flaky.enqueue(Order(order_id="o-7"))
    assert wait_for(lambda: len(app.backend.dead_letters()) == 1, timeout=60)
    assert attempts == [1] * 5
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: Pub/Sub gave up after 5 deliveries")
    assert decode(letter.body).type == "flaky"


def test_push_with_delivery_attempt_dead_letters_when_the_jobs_attempts_are_spent(
        http_function: Any, pubsub: PubSubSetup) -> None:
    app = _app(pubsub)

    @app.job(retry=cq.Retry(attempts=3))
    def flaky(payload: Order) -> None:
        raise RuntimeError("still down")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = flaky.message(Order(order_id="o-11")).body
    assert _post(http_function.url, _push_body(body, 2, cq_type="flaky")) == 500
    assert _post(http_function.url, _push_body(body, 3, cq_type="flaky")) == 200
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: attempt 3 of 3 failed")
    assert letter.attempts == 3 and letter.body == body


def test_push_body_without_delivery_attempt_counts_as_attempt_one_and_says_so(
        http_function: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = cq.App("shop", backend="memory://")
    seen: list[int] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        seen.append(ctx.attempt)

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    from cloudqueue_gcp import handlers

    handlers._warned_no_attempt = False
    body = _push_body(charge.message(Order(order_id="o-8")).body, None)
    with caplog.at_level("WARNING", logger="cloudqueue.gcp"):
        assert _post(http_function.url, body) == 200
    assert seen == [1]
    assert "no deliveryAttempt" in caplog.text


def test_push_failure_with_attempts_left_answers_non_2xx(http_function: Any) -> None:
    app = cq.App("shop", backend="memory://")

    @app.job(retry=cq.Retry(attempts=3))
    def flaky(payload: Order) -> None:
        raise RuntimeError("down")

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = flaky.message(Order(order_id="o-9")).body
    assert _post(http_function.url, _push_body(body, 2)) == 500


def test_cloudevent_shim_runs_eventarc_pubsub_events(cloudevent_function: Any, pubsub: PubSubSetup,
                                                     issuer: Any) -> None:
    from pathlib import Path

    app = _app(pubsub)
    done: list[tuple[str, int]] = []
    fail = [False]

    @app.job(retry=cq.Retry(attempts=3))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        if fail[0]:
            raise RuntimeError("down")
        done.append((payload.order_id, ctx.attempt))

    audience = cloudevent_function.url
    account = "eventarc-trigger@test-project.iam.gserviceaccount.com"
    routing.set_cloudevent(cloudqueue_gcp.cloudevent_handler(app, audience=audience, service_account=account,
                                                             certs_url=issuer.certs_url))
    recorded = json.loads(Path(__file__).parents[1].joinpath("events", "gcp",
                                                             "eventarc_pubsub_structured.json").read_text())
    recorded["data"]["message"]["data"] = base64.b64encode(
        charge.message(Order(order_id="o-10")).body).decode()
    body = json.dumps(recorded).encode()
    headers = {"Content-Type": "application/cloudevents+json",
               "Authorization": f"Bearer {issuer.token(audience, account)}"}
    assert _post(cloudevent_function.url, body, headers) == 200
    assert done == [("o-10", 2)]
    fail[0] = True
    assert _post(cloudevent_function.url, body, headers) == 500  # Pub/Sub redelivers it
    unauthenticated = {"Content-Type": "application/cloudevents+json"}
    assert _post(cloudevent_function.url, body, unauthenticated) == 401
    assert len(done) == 1
    fail[0] = False
    binary = {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "2",
              "ce-type": recorded["type"], "ce-source": recorded["source"],
              "Authorization": f"Bearer {issuer.token(audience, account)}"}
    assert _post(cloudevent_function.url, json.dumps(recorded["data"]).encode(), binary) == 200
    assert done == [("o-10", 2), ("o-10", 2)]


def test_a_missing_topic_is_queue_not_found(emulator: Any, project: str) -> None:
    backend = from_url(f"pubsub://{project}/nowhere?emulator={emulator.host}")
    with pytest.raises(cq.QueueNotFound):
        backend.send([cq.OutgoingMessage(body=b"{}", job_id="j", job_type="x")])


def test_injected_clients_are_used(pubsub: PubSubSetup) -> None:
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub.emulator)))
    backend = PubSubBackend(pubsub.project, pubsub.topic, subscription=pubsub.subscription,
                            emulator=pubsub.emulator, publisher=publisher)
    assert backend.publisher is publisher
    backend.send([cq.OutgoingMessage(body=b"{}", job_id="j", job_type="x")])
    assert len(backend.receive(max_messages=1, wait=timedelta(seconds=5))) == 1
    backend.close()


def test_an_early_pushed_message_is_not_acknowledged(http_function: Any, pubsub: PubSubSetup) -> None:
    from datetime import datetime, timezone

    from cloudqueue import envelope

    app = _app(pubsub)
    runs: list[str] = []

    @app.job
    def remind(payload: Order) -> None:
        runs.append(payload.order_id)

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    now = datetime.now(timezone.utc)
    body = envelope.encode(job_id="j-1", app="shop", job_type="remind", time=now,
                           data={"order_id": "o-12"}, not_before=now + timedelta(hours=1))
    assert _post(http_function.url, _push_body(body, 1, cq_type="remind")) == 500
    assert runs == []


def test_worker_until_empty_waits_for_a_retry_it_gave_back(pubsub: PubSubSetup) -> None:
    app = _app(pubsub)
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=2))))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("try again")

    flaky.enqueue(Order(order_id="o-13"))
    worker = app.worker(concurrency=2, poll_wait=timedelta(seconds=1), handle_signals=False)
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(worker.run(until_empty=True)))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert attempts == [1, 2]  # it did not claim empty while the retry was pending
    assert done[0].succeeded == 1 and done[0].retried == 1


def test_stats_count_what_this_worker_holds_and_gave_back(pubsub: PubSubSetup) -> None:
    backend = from_url(pubsub.url())
    backend.send([cq.OutgoingMessage(body=b"{}", job_id=str(n), job_type="x") for n in range(2)])
    received: list[Any] = []
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        received += backend.receive(max_messages=2, wait=timedelta(seconds=1))
    assert backend.stats().in_flight == 2
    backend.retry(received[0], timedelta(seconds=30))
    backend.ack(received[1])
    stats = backend.stats()
    assert (stats.in_flight, stats.delayed) == (0, 1)


def test_a_worker_on_a_missing_subscription_exits_1_with_one_line(emulator: Any, project: str,
                                                                  tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    make_pubsub(emulator.host, project)
    (tmp_path / "missing_sub_app.py").write_text(
        "import cloudqueue as cq\n"
        f"app = cq.App('shop', backend='pubsub://{project}/jobs?subscription=nowhere&emulator={emulator.host}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    try:
        answer = subprocess.run([sys.executable, "-c", "from cloudqueue.cli import main; main()", "worker",
                                 "missing_sub_app:app", "--concurrency", "1"],
                                check=False, capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the worker kept running on a missing subscription: {str(exc.stderr)[-300:]}")
    assert answer.returncode == 1
    errors = [line for line in answer.stderr.splitlines() if "Traceback" in line or line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error:") and "nowhere does not exist" in errors[0]


def test_stats_report_the_backlog_from_cloud_monitoring(pubsub: PubSubSetup, monitoring_server: Any) -> None:
    from cloudqueue_gcp._monitoring import OLDEST_UNACKED, UNDELIVERED

    backend = from_url(pubsub.url(monitoring=monitoring_server.endpoint))
    assert backend.stats().waiting is None  # no point sampled yet: unknown, not zero
    monitoring_server.record(pubsub.project, pubsub.subscription, UNDELIVERED, 9)
    monitoring_server.record(pubsub.project, pubsub.subscription, UNDELIVERED, 7)  # the newest counts
    monitoring_server.record(pubsub.project, pubsub.subscription, OLDEST_UNACKED, 42)
    monitoring_server.record(pubsub.project, pubsub.dead_subscription, UNDELIVERED, 2)
    stats = backend.stats()
    assert (stats.waiting, stats.oldest_age, stats.dead_lettered) == (7, timedelta(seconds=42), 2)


def test_stats_without_a_reachable_monitoring_say_unknown_and_never_raise(pubsub: PubSubSetup) -> None:
    from tests.conftest import free_port

    backend = from_url(pubsub.url(monitoring=f"127.0.0.1:{free_port()}", timeout="2"))
    stats = backend.stats()
    assert (stats.waiting, stats.oldest_age, stats.dead_lettered, stats.in_flight) == (None, None, None, None)
