"""Pub/Sub (Google's emulator) and Cloud Tasks (the test server + functions-framework) harnesses.

Both run in real time: ``advance`` sleeps. Pub/Sub is consumed by pulling, as a worker
does; Cloud Tasks pushes each due task, as an HTTP request with its real headers and an
OIDC token, to ``cloudqueue_gcp.http_handler`` served by functions-framework.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.backends.base import Delivery
from tests.conftest import free_port, missing_component

from .harness import Harness

#: conformance tests a backend cannot pass by its nature, and why
PUBSUB_CANNOT = {
    "test_delay_holds_the_job_back_until_due":
        "Pub/Sub has no delivery delay (capabilities.max_delay is 0: a delayed enqueue raises "
        "UnsupportedFeature)",
    "test_stats_count_waiting_delayed_and_dead_letters":
        "Pub/Sub has no delivery delay, and its API reports no queue counts",
    "test_idempotency_key_drops_the_duplicate":
        "Pub/Sub does not deduplicate on publish (capabilities.dedup is False); with a store it "
        "runs once (test_idempotency_key_runs_once_with_a_store)",
}
CLOUDTASKS_CANNOT = {
    "test_retry_later_waits_the_delay_it_names":
        "Cloud Tasks retries on the queue's retry_config; a per-task RetryLater delay cannot be honoured",
}
#: the Cloud Tasks queue's fixed retry backoff, in time units
_TASKS_BACKOFF = 1.25


def _skip_what_cannot_pass(request: pytest.FixtureRequest, cannot: dict[str, str]) -> None:
    test = request.node.name.split("[", 1)[0]
    if test in cannot:
        pytest.skip(f"capability: {cannot[test]}")
    try:
        import cloudqueue_gcp  # noqa: F401
        import functions_framework  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-gcp with its test extra", 'pip install -e "adapters/gcp[test]"')


class PubSubHarness(Harness):
    name = "pubsub"
    store_kind = "firestore"
    visibility_timeout = timedelta(seconds=10)  # the subscription's ack deadline (Pub/Sub's minimum)
    # ack deadlines are whole seconds and a pull that finds nothing takes up to half a second:
    # two-second units keep every "not due yet" check clear of the due time
    time_unit = timedelta(seconds=2)

    def __init__(self, request: pytest.FixtureRequest) -> None:
        from tests.gcp import components

        self.emulator = components.emulator(request.config)
        self.backend = self.other_queue()

    def other_queue(self) -> cq.Backend:
        from cloudqueue.backends import from_url
        from tests.gcp.conftest import make_pubsub

        project = f"conf-{uuid.uuid4().hex[:10]}"
        setup = make_pubsub(self.emulator.host, project, max_delivery_attempts=10,
                            ack_deadline=int(self.visibility_timeout.total_seconds()))
        return from_url(setup.url())

    def advance(self, delta: timedelta) -> None:
        time.sleep(delta.total_seconds())

    def run_due(self, app: cq.App, queues: list[str] | None = None) -> cq.DrainReport:
        return app.drain(queues=queues)


class CloudTasksHarness(Harness):
    name = "cloudtasks"
    store_kind = "firestore"
    time_unit = timedelta(seconds=2)
    visibility_timeout = time_unit * _TASKS_BACKOFF  # a failed dispatch comes back after the backoff

    def __init__(self, request: pytest.FixtureRequest) -> None:
        from tests.gcp import components
        from tests.gcp.conftest import SERVICE_ACCOUNT, make_queues

        self.server = components.tasks_server(request.config)
        self.issuer = components.issuer(request.config)
        self.function = components.http_function(request.config)
        self.project = f"conf-{uuid.uuid4().hex[:10]}"
        self.projects = [self.project]
        self.queues = make_queues(self.server, self.project,
                                  min_backoff=self.time_unit * _TASKS_BACKOFF, max_attempts=-1)
        from cloudqueue.backends import from_url

        self.backend = from_url(self.queues.url(self.function.url))
        self.service_account = SERVICE_ACCOUNT
        self.paths = {id(self.backend): self.queues.queue_path}

    def other_queue(self) -> cq.Backend:
        from cloudqueue.backends import from_url
        from tests.gcp.conftest import make_queues

        project = f"conf-{uuid.uuid4().hex[:10]}"
        self.projects.append(project)
        setup = make_queues(self.server, project, min_backoff=self.time_unit * _TASKS_BACKOFF,
                            max_attempts=-1, queue="jobs-critical")
        backend = from_url(setup.url(self.function.url))
        self.paths[id(backend)] = setup.queue_path
        return backend

    def app(self, name: str = "conformance", **options: Any) -> cq.App:
        return self._served(super().app(name, **options))

    def queues_app(self, name: str = "conformance", **options: Any) -> cq.App:
        return self._served(super().queues_app(name, **options))

    def _served(self, app: cq.App) -> cq.App:
        import cloudqueue_gcp

        from tests.gcp import routing

        routing.set_http(cloudqueue_gcp.http_handler(
            app, audience=self.function.url, service_account=self.service_account,
            certs_url=self.issuer.certs_url))
        return app

    def advance(self, delta: timedelta) -> None:
        time.sleep(delta.total_seconds())

    def run_due(self, app: cq.App, queues: list[str] | None = None) -> cq.DrainReport:
        report = cq.DrainReport()
        only = None if queues is None else [self.paths[id(app.queue(name))] for name in queues]
        for status in self.server.dispatch_due(queues=only):
            report.succeeded += 200 <= status < 300
            report.retried += not 200 <= status < 300
        return report

    def receive_unsettled(self, app: cq.App) -> list[Delivery]:
        """Dispatch what is due to a function that is not there: no answer, so it comes back."""
        dead = f"http://127.0.0.1:{free_port()}/"
        statuses = self.server.dispatch_due(url=dead, repeat=False)
        return [Delivery(body=b"", attempt=1, message_id=f"dispatch-{n}") for n, _ in enumerate(statuses)]

    def close(self) -> None:
        from tests.gcp import routing

        routing.set_http(lambda request: ("no handler installed", 503))
        super().close()
        for project in self.projects:
            self.server.drop_project(project)


@contextlib.contextmanager
def pubsub_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    _skip_what_cannot_pass(request, PUBSUB_CANNOT)
    harness = PubSubHarness(request)
    try:
        yield harness
    finally:
        harness.close()


@contextlib.contextmanager
def cloudtasks_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    _skip_what_cannot_pass(request, CLOUDTASKS_CANNOT)
    harness = CloudTasksHarness(request)
    try:
        yield harness
    finally:
        harness.close()


HARNESSES = {"pubsub": pubsub_harness, "cloudtasks": cloudtasks_harness}
