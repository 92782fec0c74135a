"""`cloudqueue doctor` checks the claim check's Cloud Storage bucket: it exists, and a
Delete rule on the prefix outlives the subscription's and the dead-letter subscription's
retention. Pub/Sub on Google's emulator, Cloud Storage on gcp-storage-emulator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.doctor import Finding, Severity, diagnose
from tests.gcp import components
from tests.gcp.test_doctor import subscription

pytestmark = pytest.mark.timeout(180)


def keep_dead_letters(emulator: components.PubSubEmulator, url: str, days: int) -> None:
    """The module's subscription on the dead-letter topic, keeping messages ``days`` days."""
    import grpc
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    project, topic = url.split("://", 1)[1].split("?", 1)[0].split("/")
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator.host)))
    try:
        subscriber.create_subscription(request={
            "name": f"projects/{project}/subscriptions/{topic}-dead-letters-keep",
            "topic": f"projects/{project}/topics/{topic}-dead-letters",
            "message_retention_duration": timedelta(days=days)})
    finally:
        subscriber.close()


def expire(gcs: Any, bucket: str, age: int, prefix: str = "jobs/") -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="local", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": f"http://{gcs.host}"})
    found = client.get_bucket(bucket)
    found.add_lifecycle_delete_rule(age=age, matches_prefix=[prefix])
    found.patch()


def payload_findings(url: str, gcs: Any, bucket: str) -> list[Finding]:
    app = cq.App("orders", backend=url, payload_store=f"gs://{bucket}/jobs?project=local&endpoint={gcs.host}")

    @app.job(retry=cq.Retry(attempts=5))
    def ingest(payload: dict[str, str]) -> None: ...

    try:
        report = diagnose(app)
    finally:
        app.close()
    assert f"payload store gs://{bucket}/jobs" in report.checked
    return [f for f in report.findings if f.queue.startswith("payload store")]


@pytest.fixture
def queue_url(emulator: components.PubSubEmulator, project: str) -> str:
    url = subscription(emulator, project)
    keep_dead_letters(emulator, url, 7)
    return url


def test_a_bucket_made_as_the_module_makes_it_has_no_findings(queue_url: str, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    expire(gcs_emulator, bucket, 15)  # 7 days in the subscription + 7 in the dead-letter one + 1
    assert payload_findings(queue_url, gcs_emulator, bucket) == []


def test_a_rule_shorter_than_both_retentions_is_an_error(queue_url: str, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    expire(gcs_emulator, bucket, 10)
    [finding] = payload_findings(queue_url, gcs_emulator, bucket)
    assert (finding.check, finding.severity) == ("lifecycle rule", Severity.ERROR)
    assert "deleted after 10 days" in finding.found and "7 d in the dead-letter subscription" in finding.found
    assert "at least 15 days" in finding.fix


def test_no_rule_on_the_prefix_is_a_warning(queue_url: str, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    [finding] = payload_findings(queue_url, gcs_emulator, bucket)
    assert (finding.check, finding.severity) == ("lifecycle rule", Severity.WARNING)
    expire(gcs_emulator, bucket, 30, prefix="other/")
    [finding] = payload_findings(queue_url, gcs_emulator, bucket)
    assert finding.severity is Severity.WARNING and f"gs://{bucket}/jobs/" in finding.found


def test_a_missing_bucket_is_an_error(queue_url: str, gcs_emulator: Any) -> None:
    [finding] = payload_findings(queue_url, gcs_emulator, "no-such-payloads")
    assert (finding.check, finding.severity) == ("bucket", Severity.ERROR)
    assert "payload_bucket" in finding.fix
