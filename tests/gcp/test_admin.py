"""Admin helpers against the Pub/Sub emulator and the Cloud Tasks test server."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cloudqueue_gcp import admin
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.retry import max_receives_for

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).parents[2]


class Order(BaseModel):
    order_id: str


def _subscriber(host: str) -> Any:
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def test_ensure_creates_topics_and_subscriptions_for_the_apps_jobs_from_nothing(emulator: Any, project: str) -> None:
    url = (f"pubsub://{project}/orders?subscription=orders-worker&dead_letter_topic=orders-dead"
           f"&emulator={emulator.host}")
    app = cq.App("shop", backend=url)
    done: list[str] = []

    @app.job(retry=cq.Retry(attempts=7, backoff=cq.Backoff.exponential(
        initial=timedelta(seconds=2), maximum=timedelta(minutes=20))))
    def charge(payload: Order) -> None:
        done.append(payload.order_id)

    made = admin.ensure(app)
    assert made == [f"projects/{project}/topics/orders", f"projects/{project}/topics/orders-dead",
                    f"projects/{project}/subscriptions/orders-worker"]
    assert admin.ensure(app) == made  # safe to repeat
    subscriber = _subscriber(emulator.host)
    try:
        found = subscriber.get_subscription(subscription=f"projects/{project}/subscriptions/orders-worker")
        dead = subscriber.get_subscription(subscription=f"projects/{project}/subscriptions/orders-dead")
    finally:
        subscriber.close()
    assert found.dead_letter_policy.max_delivery_attempts == max_receives_for(7)
    assert found.dead_letter_policy.dead_letter_topic == f"projects/{project}/topics/orders-dead"
    assert found.retry_policy.minimum_backoff.total_seconds() == 2
    assert found.retry_policy.maximum_backoff.total_seconds() == 600  # Pub/Sub's most
    assert dead.topic == f"projects/{project}/topics/orders-dead"
    charge.enqueue(Order(order_id="o-1"))
    assert app.drain().succeeded == 1 and done == ["o-1"]


def test_ensure_subscription_updates_an_existing_one_to_the_jobs(emulator: Any, project: str) -> None:
    admin.ensure_topic(project, "orders", emulator=emulator.host)
    admin.ensure_topic(project, "orders-dead", emulator=emulator.host)
    admin.ensure_subscription(project, "orders", "orders-worker", dead_letter_topic="orders-dead",
                              emulator=emulator.host)
    app = cq.App("shop", backend="memory://")

    @app.job(retry=cq.Retry(attempts=20))
    def charge(payload: Order) -> None: ...

    admin.ensure_subscription(project, "orders", "orders-worker", app=app, dead_letter_topic="orders-dead",
                              emulator=emulator.host)
    subscriber = _subscriber(emulator.host)
    try:
        found = subscriber.get_subscription(subscription=f"projects/{project}/subscriptions/orders-worker")
    finally:
        subscriber.close()
    assert found.dead_letter_policy.max_delivery_attempts == max_receives_for(20)


def test_ensure_subscription_refuses_jobs_needing_more_deliveries_than_pubsub_counts(
        emulator: Any, project: str) -> None:
    app = cq.App("shop", backend="memory://")

    @app.job(retry=cq.Retry(attempts=60))
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.ConfigurationError, match="at most 100"):
        admin.ensure_subscription(project, "orders", "orders-worker", app=app, dead_letter_topic="orders-dead",
                                  emulator=emulator.host)


def test_ensure_queue_sets_the_retry_config_from_the_jobs_and_keeps_the_dead_letter_queue_paused(
        tasks_server: Any, project: str) -> None:
    from urllib.parse import quote

    from google.cloud import tasks_v2

    dead = quote(f"cloudtasks://{project}/europe-west1/jobs-dead", safe="")
    app = cq.App("shop", backend=f"cloudtasks://{project}/europe-west1/jobs?target=https://fn.example/"
                                 f"&dead_letter={dead}&endpoint={tasks_server.endpoint}")

    @app.job(retry=cq.Retry(attempts=4, backoff=cq.Backoff.fixed(timedelta(seconds=5))))
    def charge(payload: Order) -> None: ...

    assert admin.ensure(app) == [f"projects/{project}/locations/europe-west1/queues/jobs",
                                 f"projects/{project}/locations/europe-west1/queues/jobs-dead"]
    admin.ensure(app)  # again: updated, not duplicated
    queue = tasks_server.get_queue(tasks_v2.GetQueueRequest(
        name=f"projects/{project}/locations/europe-west1/queues/jobs"))
    assert queue.retry_config.max_attempts == max_receives_for(4)
    assert queue.retry_config.min_backoff.total_seconds() == 5
    paused = tasks_server.get_queue(tasks_v2.GetQueueRequest(
        name=f"projects/{project}/locations/europe-west1/queues/jobs-dead"))
    assert paused.state == tasks_v2.Queue.State.PAUSED
    charge.enqueue(Order(order_id="o-1"))
    assert app.backend.stats().waiting == 1


def test_the_readme_local_steps_work_from_a_fresh_clone(emulator: Any, project: str) -> None:
    # adapters/gcp/README.md, "Local run against the emulators", step by step
    url = (f"pubsub://{project}/jobs?subscription=jobs-sub&dead_letter_topic=jobs-dead"
           f"&emulator={emulator.host}")
    env = {**os.environ, "CLOUDQUEUE_URL": url, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], check=False, capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=120)

    made = run("-m", "cloudqueue_gcp.admin", "samples.orders.jobs:app")
    assert made.returncode == 0, made.stderr
    assert f"ready: projects/{project}/subscriptions/jobs-sub" in made.stdout
    cli = "from cloudqueue.cli import main; main()"
    sent = run("-c", cli, "enqueue", "samples.orders.jobs:app", "send_confirmation_email",
               '{"order_id": "o-1", "customer_email": "a@b.co", "payment_id": "p-1", '
               '"lines": [{"sku": "s-1", "quantity": 1, "unit_price": "9.50"}]}')
    assert sent.returncode == 0, sent.stderr
    worked = run("-c", cli, "worker", "samples.orders.jobs:app", "--until-empty", "--concurrency", "2")
    assert worked.returncode == 0, worked.stderr
    header, _, counts = worked.stdout.strip().splitlines()[-3:]
    assert header.split()[:2] == ["succeeded", "retried"]
    assert counts.split()[:2] == ["1", "1"]  # the sample's mail server fails once; the retry ran
