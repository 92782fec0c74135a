"""`terraform apply` of the AWS module against moto server; then the library works on what it made.

The root in tests/terraform/moto_root applies the module with the event source mapping
left out (moto would run a mapped function in docker); the library's SQS backend
consumes in its place.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import render_tfvars
from tests.conftest import missing_component

from .conftest import Terraform

pytestmark = pytest.mark.slow

MAX_RECEIVE_COUNT = 3


class Order(BaseModel):
    order_id: str


class Report(BaseModel):
    kind: str


def scheduled_app(store: str | None = None) -> cq.App:
    app = cq.App("tf-apply", store=store)

    @app.job(schedule=cq.Cron("30 6 * * mon-fri", tz="Europe/Berlin", payload={"kind": "daily"}, name="daily"))
    def report(payload: Report, ctx: cq.JobContext) -> None:
        SCHEDULED_RUNS.append((payload.kind, ctx.idempotency_key))

    return app


SCHEDULED_RUNS: list[tuple[str, str | None]] = []


@pytest.fixture(scope="module")
def applied(terraform: Terraform, scratch: Path, moto_server: str) -> dict[str, Any]:
    """The module applied to moto; its outputs."""
    root = scratch / "moto_root"
    name = f"tf-orders-{uuid.uuid4().hex[:8]}"
    # the schedules of a job as `cloudqueue terraform-vars` writes them
    (root / "schedules.auto.tfvars").write_text(
        "\n".join(line for line in render_tfvars(scheduled_app(), "aws-sqs-lambda").splitlines()
                  if not line.startswith(("max_receive_count", "fifo", "allow_send_to_queue"))) + "\n")
    terraform.run("init", "-no-color", cwd=root)
    terraform.run("apply", "-auto-approve", "-no-color", "-var", f"endpoint={moto_server}",
                  "-var", f"name={name}", "-var", f"max_receive_count={MAX_RECEIVE_COUNT}",
                  cwd=root, timeout=900)
    outputs = json.loads(terraform.run("output", "-json", "-no-color", cwd=root).stdout)
    values = {key: item["value"] for key, item in outputs.items()}
    values["name"] = name
    return values


@pytest.fixture(scope="module")
def sqs(moto_server: str) -> Any:
    import boto3

    return boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def app(applied: dict[str, Any], moto_server: str) -> Iterator[cq.App]:
    try:
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-aws (the SQS backend)", "pip install -e adapters/aws")
    app = cq.App("tf-apply", backend=f"{applied['cloudqueue_url']}&endpoint_url={moto_server}")
    yield app
    app.close()


def dead_letter_ids(sqs: Any, dlq_url: str) -> dict[str, dict[str, Any]]:
    """The job ids in the DLQ, each with its message (received and made visible again)."""
    found: dict[str, dict[str, Any]] = {}
    for _ in range(3):
        reply = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    VisibilityTimeout=0, MessageAttributeNames=["All"],
                                    AttributeNames=["All"])
        for message in reply.get("Messages", []):
            found[json.loads(message["Body"])["id"]] = message
    return found


def test_cloudqueue_url_output_names_the_queue_and_region(applied: dict[str, Any]) -> None:
    assert applied["cloudqueue_url"] == f"sqs://{applied['name']}?region=us-east-1"
    assert applied["max_receive_count"] == MAX_RECEIVE_COUNT


def test_applied_queue_redrives_to_the_applied_dlq_after_max_receive_count(
        applied: dict[str, Any], sqs: Any) -> None:
    attributes = sqs.get_queue_attributes(QueueUrl=applied["queue_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": applied["dlq_arn"], "maxReceiveCount": MAX_RECEIVE_COUNT}
    assert attributes["VisibilityTimeout"] == "6"
    for url in (applied["queue_url"], applied["dlq_url"]):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["SqsManagedSseEnabled"] == "true"
        [statement] = json.loads(attrs["Policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_applied_role_consumes_this_queue_and_sends_to_its_dlq_and_to_itself_for_hops(
        applied: dict[str, Any], moto_server: str) -> None:
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    document = iam.get_role_policy(RoleName=applied["role_name"],
                                   PolicyName=f"cloudqueue-{applied['name']}")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {"ConsumeQueue", "SendDeadLetters", "SendToQueue", "ReadPayloads", "Logs"}
    # the claim check: get and delete payload objects under the queue's prefix, nothing else
    assert set(statements["ReadPayloads"]["Action"]) == {"s3:GetObject", "s3:DeleteObject"}
    assert statements["ReadPayloads"]["Resource"] == f"{applied['payload_bucket_arn']}/{applied['name']}/*"
    consume_arn = applied["dlq_arn"].replace("-dlq", "")
    # the module's own queue and the app's "critical" queue, each with its DLQ
    queues = sorted([consume_arn, applied["queue_arns"]["critical"]])
    assert sorted(statements["ConsumeQueue"]["Resource"]) == queues
    assert "sqs:SendMessage" not in statements["ConsumeQueue"]["Action"]
    assert sorted(statements["SendDeadLetters"]["Resource"]) == sorted(
        [applied["dlq_arn"], applied["queue_arns"]["critical"] + "-dlq"])
    assert "sqs:SendMessage" in statements["SendDeadLetters"]["Action"]
    # A standard queue's jobs can be delayed over 15 minutes: they hop through the queue.
    assert sorted(statements["SendToQueue"]["Resource"]) == queues
    assert statements["SendToQueue"]["Action"] in ("sqs:SendMessage", ["sqs:SendMessage"])


def test_applied_payload_bucket_is_private_and_expires_payloads_after_both_retentions(
        applied: dict[str, Any], moto_server: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"{applied['name']}-payloads"
    rules = {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    expire = rules["cloudqueue-payloads-expire"]
    # 4 days in the queue (the module's default retention) + 14 in the DLQ + 1
    assert expire["Expiration"]["Days"] == applied["payload_expiration_days"] == 19
    assert expire["Filter"] == {"Prefix": f"{applied['name']}/"}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    [statement] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert (statement["Effect"], statement["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


class Upload(BaseModel):
    name: str
    blob: str


def _ingest_nothing(payload: Upload) -> None:
    pass


def test_a_large_payload_goes_through_the_provisioned_bucket(applied: dict[str, Any], moto_server: str) -> None:
    import boto3

    payload = Upload(name="big", blob="x" * 1_000_000)
    over_http = cq.App("tf-apply", backend=f"{applied['cloudqueue_url']}&endpoint_url={moto_server}",
                       payload_store=f"{applied['payload_store_url']}&endpoint_url={moto_server}")
    over_http.job(name="ingest")(_ingest_nothing)
    # moto serves plain HTTP, and it enforces the bucket policy: TLS only
    with pytest.raises(cq.PermissionDenied, match="over HTTPS"):
        over_http.get_job("ingest").enqueue(payload)
    over_http.close()
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.delete_bucket_policy(Bucket=f"{applied['name']}-payloads")  # so the loopback round trip can run
    app = cq.App("tf-apply", backend=f"{applied['cloudqueue_url']}&endpoint_url={moto_server}",
                 payload_store=f"{applied['payload_store_url']}&endpoint_url={moto_server}")
    seen: list[int] = []

    @app.job
    def ingest(payload: Upload) -> None:
        seen.append(len(payload.blob))

    try:
        ingest.enqueue(payload)
        stats = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    finally:
        app.close()
    assert stats.succeeded == 1 and seen == [1_000_000]


def test_a_job_that_always_fails_lands_in_the_provisioned_dlq_after_max_receive_count(
        app: cq.App, applied: dict[str, Any], sqs: Any) -> None:
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=MAX_RECEIVE_COUNT, backoff=cq.Backoff.fixed(timedelta(0))))
    def charge_card(order: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("the card processor is down")

    job_id = charge_card.enqueue(Order(order_id="A-1"))
    # Bounded: each drain runs what is due; a retry is due again at once (zero backoff).
    for _ in range(4 * MAX_RECEIVE_COUNT):
        app.drain(max_jobs=10)
        if job_id in dead_letter_ids(sqs, applied["dlq_url"]):
            break
    dead = dead_letter_ids(sqs, applied["dlq_url"])
    assert job_id in dead, f"job not in the DLQ after attempts {attempts}"
    # At-least-once: moto may deliver a message twice, never fewer times than the count.
    assert sorted(set(attempts)) == list(range(1, MAX_RECEIVE_COUNT + 1)), attempts
    assert json.loads(dead[job_id]["Body"])["data"] == {"order_id": "A-1"}
    queue = sqs.get_queue_attributes(QueueUrl=applied["queue_url"], AttributeNames=["All"])["Attributes"]
    assert queue["ApproximateNumberOfMessages"] == queue["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_sqs_moves_a_message_whose_consumer_keeps_dying_to_the_provisioned_dlq(
        app: cq.App, applied: dict[str, Any], sqs: Any) -> None:
    @app.job(retry=cq.Retry(attempts=MAX_RECEIVE_COUNT))
    def ship(order: Order) -> None: ...

    job_id = ship.enqueue(Order(order_id="B-2"))
    received = 0
    deadline = time.monotonic() + 60
    # A consumer that dies mid-job: it receives and settles nothing, max_receive_count times.
    while job_id not in dead_letter_ids(sqs, applied["dlq_url"]):
        assert time.monotonic() < deadline, f"not dead-lettered after {received} receives"
        reply = sqs.receive_message(QueueUrl=applied["queue_url"], MaxNumberOfMessages=1,
                                    WaitTimeSeconds=2, VisibilityTimeout=1)
        received += len(reply.get("Messages", []))
    assert received == MAX_RECEIVE_COUNT


def test_the_applied_schedule_sends_its_slot_to_the_applied_queue(
        applied: dict[str, Any], sqs: Any, moto_server: str) -> None:
    import boto3
    from cloudqueue_aws import SQSBackend

    scheduler = boto3.client("scheduler", endpoint_url=moto_server, region_name="us-east-1",
                             aws_access_key_id="testing", aws_secret_access_key="testing")
    schedule = scheduler.get_schedule(Name=f"{applied['name']}-report-daily")
    assert schedule["ScheduleExpression"] == "cron(30 6 ? * 2-6 *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == applied["dlq_arn"].replace("-dlq", "")
    assert target["RoleArn"] == applied["scheduler_role_arn"]
    # moto never fires a schedule: send what EventBridge Scheduler would for Monday's slot
    body = target["Input"].replace("<aws.scheduler.scheduled-time>", "2026-11-30T05:30:00Z")
    # twice: EventBridge Scheduler retried the firing (its delivery is at least once)
    for _ in range(2):
        sqs.send_message(QueueUrl=applied["queue_url"], MessageBody=body)
    # the consumer with the applied store: the slot's key runs once
    app = scheduled_app(store=f"{applied['cloudqueue_store_url']}&endpoint_url={moto_server}")
    app.backend = SQSBackend(applied["queue_url"], client=sqs)
    SCHEDULED_RUNS.clear()
    settled = cq.DrainReport()
    for _ in range(5):  # bounded: moto may take a moment to show the messages
        for result in app.drain().results:
            settled.add(result)
        if settled.succeeded + settled.skipped == 2:
            break
    assert SCHEDULED_RUNS == [("daily", "cron:report:daily:2026-11-30T05:30:00Z")]
    assert (settled.succeeded, settled.skipped) == (1, 1)
    record = app.store_record(idempotency_key="cron:report:daily:2026-11-30T05:30:00Z")
    assert record is not None and record.runs == 1
    app.close()


def test_applied_store_table_has_ttl_and_the_role_may_use_only_it(applied: dict[str, Any], moto_server: str) -> None:
    import boto3

    table = applied["store_table_name"]
    assert table == f"{applied['name']}-store"
    assert applied["cloudqueue_store_url"] == f"dynamodb://{table}?region=us-east-1"
    assert applied["lambda_environment"]["CLOUDQUEUE_STORE_URL"] == applied["cloudqueue_store_url"]
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    described = dynamodb.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    from cloudqueue_aws.dynamodb import _INDEX, PARENT_INDEX

    # the index the store lists flows by, as cloudqueue_aws.dynamodb.ensure_table makes it
    [index] = described["GlobalSecondaryIndexes"]
    assert index["IndexName"] == PARENT_INDEX and index["KeySchema"] == _INDEX["KeySchema"]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    document = iam.get_role_policy(RoleName=applied["role_name"],
                                   PolicyName=f"cloudqueue-{applied['name']}-store")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    [statement] = document["Statement"]
    assert statement["Sid"] == "IdempotencyStore"
    assert statement["Resource"] == described["TableArn"]
    assert sorted(statement["Action"]) == ["dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem",
                                           "dynamodb:PutItem", "dynamodb:UpdateItem"]


def test_a_keyed_job_runs_once_on_the_applied_queues_and_store(applied: dict[str, Any], moto_server: str) -> None:
    from cloudqueue.backends.base import OutgoingMessage

    app = cq.App("tf-store", queues={name: f"{url}&endpoint_url={moto_server}"
                                     for name, url in sorted(applied["cloudqueue_urls"].items())},
                 store=f"{applied['cloudqueue_store_url']}&endpoint_url={moto_server}")
    ran: list[str] = []

    @app.job(queue="critical")
    def refund(order: Order) -> None:
        ran.append(order.order_id)

    message = refund.message(Order(order_id="C-3"), idempotency_key="refund-C-3")
    refund.enqueue(Order(order_id="C-3"), idempotency_key="refund-C-3")
    # a second producer's copies: SQS standard delivers them too, on either queue
    copy = OutgoingMessage(body=message.body, job_id="copy", job_type="refund")
    app.queue("critical").send([copy])
    app.queue("default").send([copy])
    for _ in range(3):
        app.drain(queues=["critical", "default"], max_jobs=10)
    assert ran == ["C-3"]
    record = app.store_record(idempotency_key="refund-C-3")
    assert record is not None and record.runs == 1


def test_each_applied_queue_of_the_app_runs_its_jobs_and_keeps_its_own_dead_letters(
        applied: dict[str, Any], sqs: Any, moto_server: str) -> None:
    urls = applied["cloudqueue_urls"]
    assert urls["critical"] == f"sqs://{applied['name']}-critical?region=us-east-1"
    app = cq.App("tf-queues", queues={name: f"{url}&endpoint_url={moto_server}"
                                      for name, url in sorted(urls.items())})
    ran: list[str] = []

    @app.job(queue="critical", retry=cq.Retry(attempts=1))
    def page(order: Order) -> None:
        ran.append(f"page {order.order_id}")
        raise cq.Permanent("nobody on call")

    @app.job
    def ship(order: Order) -> None:
        ran.append(f"ship {order.order_id}")

    paged = page.enqueue(Order(order_id="C-1"))
    ship.enqueue(Order(order_id="C-2"))
    app.drain(queues=["critical", "default"], max_jobs=10)
    assert sorted(ran) == ["page C-1", "ship C-2"]
    assert paged in dead_letter_ids(sqs, applied["dlq_urls"]["critical"])
    critical = sqs.get_queue_url(QueueName=f"{applied['name']}-critical")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=critical, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 2
    app.close()
