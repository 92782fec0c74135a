"""`cloudqueue doctor` on Cloud Tasks (the test server) and Pub/Sub (Google's emulator):
a correct setup has no findings; each fault of a broken one is found."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.doctor import DoctorSettings, Report, Severity, diagnose

from . import components

LOCATION = "europe-west1"
TARGET = "https://europe-west1-acme-shop.cloudfunctions.net/orders-worker"
INVOKER = "orders-invoker@acme-shop.iam.gserviceaccount.com"
PUSHER = "orders-push@acme-shop.iam.gserviceaccount.com"
# Jobs of 5 and 3 attempts with the default backoff (1 s doubling to 300 s): terraform-vars
# prints max_attempts 5, backoff 1 s..300 s with 9 doublings, and max_delivery_attempts 10.
RETRY = {"max_attempts": 5, "min_backoff": timedelta(seconds=1), "max_backoff": timedelta(seconds=300),
         "max_doublings": 9}
PINNED = {"uri_override": {"scheme": "HTTPS", "host": "europe-west1-acme-shop.cloudfunctions.net",
                           "path_override": {"path": "/orders-worker"}, "uri_override_enforce_mode": "ALWAYS"},
          "oidc_token": {"service_account_email": INVOKER, "audience": TARGET}}


class Order(BaseModel):
    order_id: str


def app_for(url: str, *, ordered: bool = False) -> cq.App:
    app = cq.App("orders", backend=url)
    for index, attempts in enumerate((5, 3)):
        def job(payload: Order) -> None: ...
        app.job(name=f"job{index}", retry=cq.Retry(attempts=attempts),
                ordering_key="orders" if ordered and index == 0 else None)(job)
    return app


def found(report: Report) -> list[tuple[str, Severity]]:
    return sorted((f.check, f.severity) for f in report.findings)


def check(url: str, *, ordered: bool = False, settings: DoctorSettings | None = None) -> Report:
    app = app_for(url, ordered=ordered)
    try:
        return diagnose(app, settings)
    finally:
        app.close()


# -- Cloud Tasks ------------------------------------------------------------------------------------

def tasks_queue(server: Any, project: str, **queue: Any) -> str:
    """Create a queue on the Cloud Tasks test server; return the app's URL for it."""
    from google.cloud import tasks_v2

    name = f"q{uuid.uuid4().hex[:8]}"
    parent = f"projects/{project}/locations/{LOCATION}"
    server.create_queue(tasks_v2.CreateQueueRequest(parent=parent, queue={
        "name": f"{parent}/queues/{name}", **queue}))
    return (f"cloudtasks://{project}/{LOCATION}/{name}?target={TARGET}&service_account={INVOKER}"
            f"&audience={TARGET}&endpoint={server.endpoint}")


def test_a_cloud_tasks_queue_as_the_module_makes_it_has_no_findings(tasks_server: Any, project: str) -> None:
    url = tasks_queue(tasks_server, project, retry_config=RETRY, http_target=PINNED,
                      rate_limits={"max_dispatches_per_second": 50, "max_concurrent_dispatches": 20})
    report = check(url)
    assert report.findings == [], report.render()


def test_a_broken_cloud_tasks_queue_reports_each_fault(tasks_server: Any, project: str) -> None:
    from google.cloud import tasks_v2

    url = tasks_queue(tasks_server, project, state=tasks_v2.Queue.State.PAUSED,
                      retry_config={**RETRY, "max_attempts": 3, "min_backoff": timedelta(seconds=10)},
                      rate_limits={"max_dispatches_per_second": 0, "max_concurrent_dispatches": 0})
    report = check(url)
    assert found(report) == sorted([("queue state", Severity.ERROR), ("max attempts", Severity.ERROR),
                                    ("backoff", Severity.WARNING), ("rate limits", Severity.ERROR),
                                    ("OIDC target", Severity.ERROR)]), report.render()
    by_check = {f.check: f for f in report.findings}
    assert by_check["max attempts"].fix.startswith("max_attempts = 5")
    assert "min_backoff_seconds = 1, max_backoff_seconds = 300, max_doublings = 9" in by_check["backoff"].fix
    assert by_check["OIDC target"].found == "no queue-level http_target"
    assert not report.ok


def test_a_queue_that_pins_the_wrong_target_or_token_is_an_error_each(tasks_server: Any, project: str) -> None:
    wrong = {"uri_override": {**PINNED["uri_override"], "host": "elsewhere.example.com"},
             "oidc_token": {"service_account_email": "other@acme-shop.iam.gserviceaccount.com",
                            "audience": "https://elsewhere.example.com/"}}
    report = check(tasks_queue(tasks_server, project, retry_config=RETRY, http_target=wrong))
    assert [f.found for f in report.findings] == [
        "tasks go to https://elsewhere.example.com/orders-worker",
        "tokens for other@acme-shop.iam.gserviceaccount.com",
        "tokens for audience https://elsewhere.example.com/"], report.render()


def test_a_queue_that_only_fills_in_missing_urls_does_not_pin_them(tasks_server: Any, project: str) -> None:
    loose = {**PINNED, "uri_override": {**PINNED["uri_override"], "uri_override_enforce_mode": "IF_NOT_EXISTS"}}
    report = check(tasks_queue(tasks_server, project, retry_config=RETRY, http_target=loose))
    assert [(f.check, f.found) for f in report.findings] == [
        ("OIDC target", "the queue does not enforce the task URL")]


def test_unlimited_attempts_with_a_retry_duration_can_drop_the_last_attempt(
        tasks_server: Any, project: str) -> None:
    from google.cloud import tasks_v2

    url = tasks_queue(tasks_server, project, retry_config={**RETRY, "max_attempts": -1}, http_target=PINNED)
    # The test server keeps only attempts, backoff and doublings of a new queue's retry_config
    # and has no UpdateQueue: set the duration on the queue it holds, as an update would.
    held = tasks_server.get_queue(tasks_v2.GetQueueRequest(name=url.split("?")[0].replace(
        "cloudtasks://", "projects/").replace(f"/{LOCATION}/", f"/locations/{LOCATION}/queues/")))
    held.retry_config.max_retry_duration = timedelta(hours=1)
    report = check(url)
    assert found(report) == [("retry duration", Severity.ERROR)], report.render()


def test_a_missing_cloud_tasks_queue_is_an_error_finding(tasks_server: Any, project: str) -> None:
    report = check(f"cloudtasks://{project}/{LOCATION}/never-made?target={TARGET}&endpoint={tasks_server.endpoint}")
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("reachable", Severity.ERROR)
    assert "QueueNotFound" in finding.found


# -- Pub/Sub --------------------------------------------------------------------------------------------

def subscription(emulator: components.PubSubEmulator, project: str, *, dead_letter: int | None = 10,
                 retry: tuple[float, float] | None = (1, 300), ack: int = 30, push: dict[str, Any] | None = None,
                 ordering: bool = False, query: str = "") -> str:
    """Create a topic, a dead-letter topic and a subscription on the emulator; return the app's URL."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    name = f"t{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    try:
        topic = publisher.create_topic(name=f"projects/{project}/topics/{name}").name
        dead = publisher.create_topic(name=f"projects/{project}/topics/{name}-dead-letters").name
        request: dict[str, Any] = {"name": f"projects/{project}/subscriptions/{name}-push", "topic": topic,
                                   "ack_deadline_seconds": ack, "enable_message_ordering": ordering}
        if dead_letter is not None:
            request["dead_letter_policy"] = {"dead_letter_topic": dead, "max_delivery_attempts": dead_letter}
        if retry is not None:
            request["retry_policy"] = {"minimum_backoff": timedelta(seconds=retry[0]),
                                       "maximum_backoff": timedelta(seconds=retry[1])}
        if push is not None:
            request["push_config"] = push
        subscriber.create_subscription(request=request)
    finally:
        publisher.stop()
        subscriber.close()
    return (f"pubsub://{project}/{name}?subscription={name}-push&dead_letter_topic={name}-dead-letters"
            f"&emulator={emulator.host}{query}")


def test_a_pull_subscription_as_the_module_makes_it_has_no_findings(emulator: Any, project: str) -> None:
    report = check(subscription(emulator, project))
    assert report.findings == [], report.render()


def test_a_push_subscription_as_the_module_makes_it_has_no_findings(emulator: Any, project: str) -> None:
    push = {"push_endpoint": TARGET, "oidc_token": {"service_account_email": PUSHER, "audience": TARGET}}
    url = subscription(emulator, project, ack=120, push=push,
                       query=f"&push_audience={TARGET}&push_service_account={PUSHER}")
    report = check(url, settings=DoctorSettings(function_timeout=timedelta(seconds=60)))
    assert report.findings == [], report.render()


def test_a_broken_pull_subscription_reports_each_fault(emulator: Any, project: str) -> None:
    report = check(subscription(emulator, project, dead_letter=None, retry=None, ack=10), ordered=True,
                   settings=DoctorSettings(heartbeat=timedelta(seconds=15)))
    assert found(report) == sorted([("dead-letter policy", Severity.ERROR), ("retry policy", Severity.WARNING),
                                    ("ack deadline", Severity.ERROR), ("message ordering", Severity.ERROR)])
    by_check = {f.check: f for f in report.findings}
    assert "max_delivery_attempts = 10" in by_check["dead-letter policy"].fix
    assert "minimum_backoff = 1s, maximum_backoff = 300s" in by_check["retry policy"].fix
    assert by_check["ack deadline"].fix.startswith("ack_deadline_seconds >= 45")
    assert "job0 use an ordering_key" in by_check["message ordering"].found


def test_delivery_attempts_without_headroom_and_a_short_ack_deadline(emulator: Any, project: str) -> None:
    report = check(subscription(emulator, project, dead_letter=5, retry=(10, 600), ack=20))
    assert found(report) == sorted([("dead-letter policy", Severity.ERROR), ("retry policy", Severity.WARNING),
                                    ("ack deadline", Severity.WARNING)]), report.render()
    by_check = {f.check: f for f in report.findings}
    assert by_check["dead-letter policy"].found == "max_delivery_attempts 5: 0 over the jobs' 5 attempts"
    assert by_check["retry policy"].found == "10 s to 600 s"


def test_a_broken_push_subscription_reports_each_fault(emulator: Any, project: str) -> None:
    push = {"push_endpoint": "http://orders.example.com/push"}
    url = subscription(emulator, project, ack=30, push=push,
                       query=f"&push_audience={TARGET}&push_service_account={PUSHER}")
    report = check(url, settings=DoctorSettings(function_timeout=timedelta(seconds=60)))
    assert [(f.check, f.found) for f in report.findings] == [
        ("ack deadline", "30 s, function timeout 60 s"),
        ("push endpoint auth", "pushes to http://orders.example.com/push"),
        ("push endpoint auth", "pushes carry no OIDC token")], report.render()


def test_pushes_signed_for_another_account_or_audience_are_refused_by_the_shim(emulator: Any, project: str) -> None:
    someone = "someone@acme-shop.iam.gserviceaccount.com"
    push = {"push_endpoint": TARGET,
            "oidc_token": {"service_account_email": someone, "audience": "https://other.example.com/"}}
    url = subscription(emulator, project, push=push, query=f"&push_audience={TARGET}&push_service_account={PUSHER}")
    report = check(url)
    assert [f.found for f in report.findings] == [
        "tokens for someone@acme-shop.iam.gserviceaccount.com", "tokens for audience https://other.example.com/"]


@pytest.mark.parametrize("scheme", ["cloudtasks", "pubsub"])
def test_the_google_checks_are_found_by_scheme(scheme: str) -> None:
    from cloudqueue_gcp import doctor

    from cloudqueue.doctor import checks_for

    assert checks_for(scheme) is {"cloudtasks": doctor.check_cloud_tasks, "pubsub": doctor.check_pubsub}[scheme]
