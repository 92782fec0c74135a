"""Fixtures for the Google tests: the shared real components, and fresh resources per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from . import components, routing

SERVICE_ACCOUNT = "tasks-invoker@test-project.iam.gserviceaccount.com"


@pytest.fixture(scope="session")
def emulator(pytestconfig: pytest.Config) -> components.PubSubEmulator:
    return components.emulator(pytestconfig)


@pytest.fixture(scope="session")
def issuer(pytestconfig: pytest.Config) -> Any:
    return components.issuer(pytestconfig)


@pytest.fixture(scope="session")
def monitoring_server() -> Iterator[Any]:
    from .monitoring_server import MonitoringServer

    server = MonitoringServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tasks_server(pytestconfig: pytest.Config) -> Any:
    return components.tasks_server(pytestconfig)


@pytest.fixture
def http_function(pytestconfig: pytest.Config) -> Iterator[components.FunctionServer]:
    server = components.http_function(pytestconfig)
    yield server
    routing.set_http(lambda request: ("no handler installed", 503))


@pytest.fixture
def cloudevent_function(pytestconfig: pytest.Config) -> Iterator[components.FunctionServer]:
    server = components.cloudevent_function(pytestconfig)
    yield server

    def none(event: Any) -> None:
        raise RuntimeError("no handler installed")
    routing.set_cloudevent(none)


@pytest.fixture
def project(pytestconfig: pytest.Config) -> Iterator[str]:
    """A project id of this test's own, so resources never collide."""
    name = f"proj-{uuid.uuid4().hex[:10]}"
    yield name
    server = components.started("tasks")
    if server is not None:
        server.drop_project(name)


@dataclass
class PubSubSetup:
    """Topics and subscriptions made on the emulator for one test."""

    emulator: str
    project: str
    topic: str = "jobs"
    subscription: str = "jobs-sub"
    dead_topic: str = "jobs-dead"
    dead_subscription: str = "jobs-dead"

    def url(self, **extra: str) -> str:
        query = {"subscription": self.subscription, "dead_letter_topic": self.dead_topic,
                 "dead_letter_subscription": self.dead_subscription, "emulator": self.emulator, **extra}
        return f"pubsub://{self.project}/{self.topic}?" + "&".join(f"{k}={v}" for k, v in query.items())


def make_pubsub(emulator_host: str, project: str, *, max_delivery_attempts: int | None = 5,
                ack_deadline: int = 10, push_endpoint: str | None = None,
                minimum_backoff: timedelta | None = None) -> PubSubSetup:
    """Create a topic, its subscription (with a dead-letter policy) and the dead-letter pair."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    setup = PubSubSetup(emulator=emulator_host, project=project)
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    try:
        topic = publisher.create_topic(name=f"projects/{project}/topics/{setup.topic}").name
        dead = publisher.create_topic(name=f"projects/{project}/topics/{setup.dead_topic}").name
        request: dict[str, Any] = {"name": f"projects/{project}/subscriptions/{setup.subscription}",
                                   "topic": topic, "ack_deadline_seconds": ack_deadline}
        if max_delivery_attempts is not None:
            request["dead_letter_policy"] = {"dead_letter_topic": dead,
                                             "max_delivery_attempts": max_delivery_attempts}
        if push_endpoint is not None:
            request["push_config"] = {"push_endpoint": push_endpoint}
        if minimum_backoff is not None:
            request["retry_policy"] = {"minimum_backoff": minimum_backoff,
                                       "maximum_backoff": minimum_backoff * 2}
        subscriber.create_subscription(request=request)
        subscriber.create_subscription(request={
            "name": f"projects/{project}/subscriptions/{setup.dead_subscription}", "topic": dead})
    finally:
        publisher.stop()
        subscriber.close()
    return setup


@pytest.fixture
def pubsub(emulator: components.PubSubEmulator, project: str) -> PubSubSetup:
    return make_pubsub(emulator.host, project)


@dataclass
class TasksSetup:
    """A queue and its paused dead-letter queue on the Cloud Tasks test server."""

    server: Any
    project: str
    location: str = "europe-west1"
    queue: str = "jobs"
    dead_queue: str = "jobs-dead"

    @property
    def queue_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/queues/{self.queue}"

    def url(self, target: str, *, dead_letter: str | None = None, audience: str | None = None) -> str:
        dead = dead_letter or f"cloudtasks://{self.project}/{self.location}/{self.dead_queue}"
        from urllib.parse import quote

        query = {"target": target, "service_account": SERVICE_ACCOUNT, "audience": audience or target,
                 "dead_letter": quote(dead, safe=""), "endpoint": self.server.endpoint}
        return (f"cloudtasks://{self.project}/{self.location}/{self.queue}?"
                + "&".join(f"{k}={v}" for k, v in query.items()))


def make_queues(server: Any, project: str, *, min_backoff: timedelta = timedelta(seconds=1),
                max_attempts: int = -1, queue: str = "jobs") -> TasksSetup:
    """Create the queue (fixed backoff ``min_backoff``) and a paused dead-letter queue."""
    from google.cloud import tasks_v2

    setup = TasksSetup(server=server, project=project, queue=queue, dead_queue=f"{queue}-dead")
    parent = f"projects/{project}/locations/{setup.location}"
    server.create_queue(tasks_v2.CreateQueueRequest(parent=parent, queue={
        "name": setup.queue_path,
        "retry_config": {"max_attempts": max_attempts, "min_backoff": min_backoff,
                         "max_backoff": min_backoff, "max_doublings": 0}}))
    server.create_queue(tasks_v2.CreateQueueRequest(parent=parent, queue={
        "name": f"{parent}/queues/{setup.dead_queue}", "state": tasks_v2.Queue.State.PAUSED}))
    return setup


@pytest.fixture
def queues(tasks_server: Any, project: str) -> Iterator[TasksSetup]:
    yield make_queues(tasks_server, project)
    tasks_server.drop_project(project)
