"""The Cloud Tasks backend and the HTTP shim, against the Cloud Tasks test server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import cloudqueue_gcp
import pytest
from cloudqueue_gcp.tasks import CloudTasksBackend, task_id_for_key
from google.cloud import tasks_v2
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends import from_url
from cloudqueue.envelope import decode

from . import routing
from .conftest import SERVICE_ACCOUNT, TasksSetup, make_pubsub

pytestmark = pytest.mark.timeout(120)


class Order(BaseModel):
    order_id: str


def _app(queues: TasksSetup, function_url: str, issuer: Any, **url_options: Any) -> cq.App:
    app = cq.App("shop", backend=queues.url(function_url, **url_options))
    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))
    return app


def _tasks(backend: cq.Backend) -> list[tasks_v2.Task]:
    assert isinstance(backend, CloudTasksBackend)
    return list(backend.client.list_tasks(request={"parent": backend.queue_path,
                                                   "response_view": tasks_v2.Task.View.FULL}))


def test_enqueue_creates_an_http_task_with_an_oidc_token_toward_the_function(
        queues: TasksSetup, http_function: Any, issuer: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def charge(payload: Order) -> None: ...

    job_id = charge.enqueue(Order(order_id="o-1"))
    [task] = _tasks(app.backend)
    request = task.http_request
    assert request.url == http_function.url
    assert request.http_method == tasks_v2.HttpMethod.POST
    assert request.oidc_token.service_account_email == SERVICE_ACCOUNT
    assert request.oidc_token.audience == http_function.url
    assert decode(request.body).id == job_id


def test_task_runs_in_the_function_with_the_attempt_from_the_retry_count(
        queues: TasksSetup, http_function: Any, issuer: Any, tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)
    seen: list[tuple[int, str | None]] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        seen.append((ctx.attempt, payload.order_id))
        if ctx.attempt == 1:
            raise RuntimeError("first try fails")

    flaky.enqueue(Order(order_id="o-2"))
    assert tasks_server.dispatch_due() == [500]
    assert seen == [(1, "o-2")]
    sent = tasks_server.requests[-1]
    assert sent["X-CloudTasks-TaskRetryCount"] == "0"
    assert sent["Authorization"].startswith("Bearer ")
    import time

    time.sleep(1.2)  # the queue's retry_config backoff is 1 s
    assert tasks_server.dispatch_due() == [200]
    assert seen == [(1, "o-2"), (2, "o-2")]
    assert tasks_server.requests[-1]["X-CloudTasks-TaskRetryCount"] == "1"
    assert _tasks(app.backend) == []


def test_second_enqueue_with_the_same_key_is_a_no_op_returning_the_same_id(
        queues: TasksSetup, http_function: Any, issuer: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def receipt(payload: Order) -> None: ...

    first = receipt.enqueue(Order(order_id="o-3"), idempotency_key="receipt/o-3 ✓")
    second = receipt.enqueue(Order(order_id="o-3"), idempotency_key="receipt/o-3 ✓")
    assert first == second
    [task] = _tasks(app.backend)
    assert task.name.endswith("/tasks/" + task_id_for_key("receipt/o-3 ✓"))
    assert isinstance(app.backend, CloudTasksBackend)
    assert app.backend.client.get_task(request={"name": task.name}).name == task.name


def test_key_encoding_is_safe_and_deterministic() -> None:
    key = "order 17/receipt?lang=fr&x=ü" + "z" * 600
    task_id = task_id_for_key(key)
    assert task_id == task_id_for_key(key)
    assert task_id != task_id_for_key(key + "!")
    assert len(task_id) <= 500
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in task_id)
    assert task_id_for_key("a/b") != task_id_for_key("a?b")  # sanitised alike, hashed apart


def test_a_key_stays_taken_after_its_task_ran(queues: TasksSetup, http_function: Any, issuer: Any,
                                              tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)
    runs: list[str] = []

    @app.job
    def receipt(payload: Order) -> None:
        runs.append(payload.order_id)

    receipt.enqueue(Order(order_id="o-4"), idempotency_key="k-4")
    tasks_server.dispatch_due()
    receipt.enqueue(Order(order_id="o-4"), idempotency_key="k-4")
    tasks_server.dispatch_due()
    assert runs == ["o-4"]


def test_delay_uses_schedule_time(queues: TasksSetup, http_function: Any, issuer: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def remind(payload: Order) -> None: ...

    before = datetime.now(timezone.utc)
    remind.enqueue(Order(order_id="o-5"), delay=timedelta(hours=2))
    [task] = _tasks(app.backend)
    assert timedelta(hours=2) <= task.schedule_time - before < timedelta(hours=2, minutes=1)
    assert decode(task.http_request.body).not_before is None
    stats = app.backend.stats()
    assert (stats.waiting, stats.delayed, stats.in_flight) == (0, 1, 0)


def test_delay_beyond_30_days_hops_through_cqnotbefore(queues: TasksSetup, http_function: Any,
                                                       issuer: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def renew(payload: Order) -> None: ...

    before = datetime.now(timezone.utc)
    renew.enqueue(Order(order_id="o-6"), delay=timedelta(days=45))
    [task] = _tasks(app.backend)
    assert timedelta(days=30) <= task.schedule_time - before < timedelta(days=30, minutes=1)
    not_before = decode(task.http_request.body).not_before_at
    assert not_before is not None and timedelta(days=45) <= not_before - before < timedelta(days=45, minutes=1)


def test_an_early_hop_is_sent_on_with_the_time_left(queues: TasksSetup, http_function: Any,
                                                    issuer: Any, tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)
    runs: list[str] = []

    @app.job
    def renew(payload: Order) -> None:
        runs.append(payload.order_id)

    message = renew.message(Order(order_id="o-7"), delay=timedelta(days=45))
    early = cq.OutgoingMessage(body=message.body, job_id=message.job_id, job_type="renew")
    app.backend.send([early])  # delivered 45 days early
    assert tasks_server.dispatch_due() == [200]
    assert runs == []
    [task] = _tasks(app.backend)
    left = task.schedule_time - datetime.now(timezone.utc)
    assert timedelta(days=29, hours=23) < left <= timedelta(days=30)  # as far as Cloud Tasks goes
    assert task.http_request.body == message.body  # cqnotbefore travels on


def test_permanent_failure_is_written_to_the_paused_dead_letter_queue_then_acknowledged(
        queues: TasksSetup, http_function: Any, issuer: Any, tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job(retry=cq.Retry(attempts=5))
    def refuse(payload: Order) -> None:
        raise cq.Permanent("order was cancelled")

    job_id = refuse.enqueue(Order(order_id="o-8"))
    assert tasks_server.dispatch_due() == [200]
    assert _tasks(app.backend) == []
    [letter] = app.backend.dead_letters()
    assert letter.reason == "permanent: order was cancelled"
    assert letter.job_type == "refuse" and letter.attempts == 1
    assert decode(letter.body).id == job_id
    assert app.backend.stats().dead_lettered == 1


def test_exhausted_attempts_go_to_dead_letters_and_redrive_runs_them_again(
        queues: TasksSetup, http_function: Any, issuer: Any, tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)
    fail = [True]
    done: list[int] = []

    @app.job(retry=cq.Retry(attempts=1))
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        if fail[0]:
            raise RuntimeError("carrier down\nsecond line")
        done.append(ctx.attempt)

    ship.enqueue(Order(order_id="o-9"))
    assert tasks_server.dispatch_due() == [200]
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: attempt 1 of 1 failed: RuntimeError: carrier down\nsecond")
    fail[0] = False
    assert app.backend.redrive([letter.message_id]) == 1
    assert app.backend.dead_letters() == []
    assert tasks_server.dispatch_due() == [200]
    assert done == [1]


def test_purge_deletes_every_dead_letter(queues: TasksSetup, http_function: Any, issuer: Any,
                                         tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    tasks_server.dispatch_due()
    assert app.backend.purge_dead_letters() == 3
    assert app.backend.dead_letters() == []


def test_a_dead_letter_that_cannot_be_written_is_answered_500_and_kept(
        queues: TasksSetup, http_function: Any, issuer: Any, tasks_server: Any) -> None:
    missing = f"cloudtasks://{queues.project}/{queues.location}/no-such-queue"
    app = _app(queues, http_function.url, issuer, dead_letter=missing)

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue(Order(order_id="o-10"))
    assert tasks_server.dispatch_due(repeat=False) == [500]
    [task] = _tasks(app.backend)
    assert task.dispatch_count == 1


def test_dead_letters_can_go_to_a_pubsub_topic_through_injected_clients(
        queues: TasksSetup, http_function: Any, issuer: Any, emulator: Any, project: str) -> None:
    import grpc
    from cloudqueue_gcp import tasks
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    tasks_server = queues.server
    topic = make_pubsub(emulator.host, project, max_delivery_attempts=None)
    dead = f"pubsub://{project}/{topic.dead_topic}?subscription={topic.dead_subscription}"
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    backend = tasks.from_url(queues.url(http_function.url, dead_letter=dead), publisher=publisher,
                             subscriber=subscriber)
    app = cq.App("shop", backend=backend)
    routing.set_http(cloudqueue_gcp.http_handler(app, audience=http_function.url,
                                                 service_account=SERVICE_ACCOUNT, certs_url=issuer.certs_url))
    runs: list[str] = []

    @app.job
    def refuse(payload: Order) -> None:
        runs.append(payload.order_id)
        if len(runs) == 1:
            raise cq.Permanent("not yet")

    refuse.enqueue(Order(order_id="o-11"))
    assert tasks_server.dispatch_due() == [200]
    [letter] = app.backend.dead_letters()
    assert letter.reason == "permanent: not yet" and letter.job_type == "refuse"
    assert app.backend.redrive() == 1
    assert tasks_server.dispatch_due() == [200]
    assert runs == ["o-11", "o-11"]
    assert app.backend.dead_letters() == []


def test_poison_is_dead_lettered_at_once(queues: TasksSetup, http_function: Any, issuer: Any,
                                         tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def charge(payload: Order) -> None: ...

    app.backend.send([cq.OutgoingMessage(body=b"{not json", job_id="x", job_type="charge")])
    assert tasks_server.dispatch_due() == [200]
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("poison: not a cloudqueue envelope") and letter.body == b"{not json"


def test_job_context_deadline_comes_from_the_dispatch_deadline(
        tasks_server: Any, project: str, http_function: Any, issuer: Any) -> None:
    from .conftest import make_queues

    queues = make_queues(tasks_server, project)
    app = cq.App("shop", backend=queues.url(http_function.url) + "&dispatch_deadline=120")
    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))
    left: list[timedelta | None] = []

    @app.job
    def report(payload: Order, ctx: cq.JobContext) -> None:
        left.append(ctx.remaining())

    report.enqueue(Order(order_id="o-12"))
    tasks_server.dispatch_due()
    [remaining] = left
    assert remaining is not None and timedelta(seconds=100) < remaining <= timedelta(seconds=120)
    [task] = tasks_server.requests[-1:]
    assert task["X-CloudTasks-QueueName"] == queues.queue


def test_stats_count_waiting_delayed_and_dead_letters(queues: TasksSetup, http_function: Any,
                                                      issuer: Any, tasks_server: Any) -> None:
    app = _app(queues, http_function.url, issuer)

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue_many([Order(order_id="a"), Order(order_id="b")])
    refuse.enqueue(Order(order_id="c"), delay=timedelta(minutes=5))
    stats = app.backend.stats()
    assert (stats.waiting, stats.delayed, stats.in_flight, stats.dead_lettered) == (2, 1, 0, 0)
    assert stats.oldest_age is not None and stats.oldest_age < timedelta(minutes=1)
    tasks_server.dispatch_due()
    stats = app.backend.stats()
    assert (stats.waiting, stats.delayed, stats.dead_lettered) == (0, 1, 2)


def test_a_missing_queue_is_queue_not_found(tasks_server: Any, project: str) -> None:
    backend = from_url(f"cloudtasks://{project}/europe-west1/nowhere?target=http://127.0.0.1:9/"
                       f"&endpoint={tasks_server.endpoint}")
    app = cq.App("shop", backend=backend)

    @app.job
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.QueueNotFound, match="nowhere"):
        charge.enqueue(Order(order_id="o-13"))


def test_an_injected_client_is_used(tasks_server: Any, queues: TasksSetup) -> None:
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    client = tasks_v2.CloudTasksClient(
        transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(tasks_server.endpoint)))
    backend = CloudTasksBackend(queues.project, queues.location, queues.queue,
                                target="http://127.0.0.1:9/", client=client)
    assert backend.client is client
    app = cq.App("shop", backend=backend)

    @app.job
    def charge(payload: Order) -> None: ...

    charge.enqueue(Order(order_id="o-14"))
    assert len(_tasks(backend)) == 1


def test_the_last_attempt_the_queue_allows_is_dead_lettered_not_dropped(
        tasks_server: Any, project: str, http_function: Any, issuer: Any) -> None:
    from .conftest import make_queues

    queues = make_queues(tasks_server, project, max_attempts=2)  # as Terraform sets it from the job
    app = _app(queues, http_function.url, issuer)
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=2))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("down")

    flaky.enqueue(Order(order_id="o-15"))
    assert tasks_server.dispatch_due() == [500]
    import time

    time.sleep(1.2)
    assert tasks_server.dispatch_due() == [200]
    assert attempts == [1, 2]
    [letter] = app.backend.dead_letters()
    assert letter.reason.startswith("exhausted: attempt 2 of 2 failed") and letter.attempts == 2
    assert _tasks(app.backend) == []


def test_enqueue_many_creates_every_task(queues: TasksSetup, http_function: Any, issuer: Any) -> None:
    app = _app(queues, http_function.url, issuer)
    done: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        done.append(payload.order_id)

    ids = charge.enqueue_many([Order(order_id=str(n)) for n in range(25)])
    assert len(set(ids)) == 25 and len(_tasks(app.backend)) == 25
    queues.server.dispatch_due()
    assert sorted(done, key=int) == [str(n) for n in range(25)]


def test_stats_count_dead_letters_on_a_pubsub_topic_from_cloud_monitoring(
        tasks_server: Any, project: str, emulator: Any, monitoring_server: Any) -> None:

    from cloudqueue_gcp._monitoring import UNDELIVERED

    from .conftest import make_pubsub, make_queues

    setup = make_queues(tasks_server, project)
    pubsub = make_pubsub(emulator.host, project)
    dead = (f"pubsub://{project}/{pubsub.dead_topic}?subscription={pubsub.dead_subscription}"
            f"&emulator={emulator.host}&monitoring={monitoring_server.endpoint}")
    backend = from_url(setup.url("https://fn.example/", dead_letter=dead))
    assert backend.stats().dead_lettered is None  # nothing sampled yet: unknown
    monitoring_server.record(project, pubsub.dead_subscription, UNDELIVERED, 3)
    assert backend.stats().dead_lettered == 3
