"""The claim check beside the idempotency store on AWS: SQS, S3 and DynamoDB on the moto
server. The store decides before the payload is fetched, so a copy of an offloaded job
that already succeeded is skipped, and one whose twin is running waits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cloudqueue_aws import SQSBackend, lambda_handler
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.store import Status
from tests.aws.conftest import FakeLambdaContext
from tests.store.stores import dynamodb_endpoint, dynamodb_table

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024


class Upload(BaseModel):
    name: str
    blob: str


def big(name: str = "report.csv", n: int = MB) -> Upload:
    return Upload(name=name, blob=("0123456789abcdef" * (n // 16 + 1))[:n])


def objects(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def setup(request: pytest.FixtureRequest, sqs: Any, s3_bucket: str, make_queue: Any,
          moto_server: str) -> Iterator[Any]:
    endpoint = dynamodb_endpoint(request)
    table = dynamodb_table(endpoint)
    pair = make_queue(visibility_timeout=timedelta(seconds=30))
    apps: list[cq.App] = []

    def app() -> cq.App:
        made = cq.App("shop", backend=SQSBackend(pair.url, client=sqs),
                      payload_store=f"s3://{s3_bucket}/jobs?region=us-east-1&endpoint_url={moto_server}",
                      store=f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
        apps.append(made)
        return made

    yield pair, app
    for made in apps:
        made.close()


def send_copies(sqs: Any, pair: Any, app: cq.App, n: int, **options: Any) -> None:
    """``n`` copies of one offloaded message on the queue (a producer that sent again)."""
    message = app._build(app.get_job("ingest"), big(), **options)
    for _ in range(n):
        sqs.send_message(QueueUrl=pair.url, MessageBody=message.body.decode())


def sqs_event(sqs: Any, pair: Any, most: int = 10) -> dict[str, Any]:
    """Up to ``most`` of the queue's messages as Lambda's event source mapping hands them over."""
    records: list[dict[str, Any]] = []
    for _ in range(5):  # SQS may answer with fewer messages than it has
        left = most - len(records)
        if left == 0:
            break
        messages = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=left, VisibilityTimeout=30,
                                       MessageSystemAttributeNames=["All"]).get("Messages") or []
        records += [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                           "SentTimestamp": m["Attributes"]["SentTimestamp"]},
            "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
            "eventSourceARN": pair.arn, "awsRegion": "us-east-1"} for m in messages]
    assert records, "nothing came back from the queue"
    return {"Records": records}


def test_copies_after_success_are_skipped_by_the_lambda_shim(sqs: Any, s3: Any, s3_bucket: str,
                                                             setup: Any) -> None:
    pair, make_app = setup
    app = make_app()
    ran: list[str] = []

    @app.job
    def ingest(payload: Upload) -> None:
        ran.append(payload.name)

    send_copies(sqs, pair, app, 3, idempotency_key="ingest-report")
    handler = lambda_handler(app, client=sqs)
    answer = handler(sqs_event(sqs, pair, most=2), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []} and ran == ["report.csv"]
    assert objects(s3, s3_bucket) == []  # deleted after the first success
    answer = handler(sqs_event(sqs, pair), FakeLambdaContext(60_000))  # the third, later
    assert answer == {"batchItemFailures": []} and ran == ["report.csv"]
    assert SQSBackend(pair.url, client=sqs).dead_letters() == []
    record = app.store_record(idempotency_key="ingest-report")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1


def test_a_copy_during_the_run_stays_in_the_queue_then_is_skipped(sqs: Any, s3: Any, s3_bucket: str,
                                                                  setup: Any) -> None:
    pair, make_app = setup
    app, elsewhere = make_app(), make_app()  # two concurrent invocations, one store
    ran: list[str] = []
    inner: list[dict[str, Any]] = []

    def ingest(payload: Upload) -> None:
        ran.append(payload.name)
        if len(ran) == 1:  # while this runs, another invocation receives the copy
            event = sqs_event(sqs, pair, most=1)
            inner.append(event)
            inner.append(lambda_handler(elsewhere, client=sqs)(event, FakeLambdaContext(60_000)))

    app.job(name="ingest")(ingest)
    elsewhere.job(name="ingest")(ingest)
    send_copies(sqs, pair, app, 2, idempotency_key="ingest-report")
    answer = lambda_handler(app, client=sqs)(sqs_event(sqs, pair, most=1), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}
    event, deferred = inner
    copy = event["Records"][0]["messageId"]
    assert deferred == {"batchItemFailures": [{"itemIdentifier": copy}]}  # stays, not dead-lettered
    assert ran == ["report.csv"] and objects(s3, s3_bucket) == []
    # the copy comes back after the first run completed: acknowledged unrun
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    assert lambda_handler(elsewhere, client=sqs)(event, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    assert ran == ["report.csv"] and SQSBackend(pair.url, client=sqs).dead_letters() == []


def test_the_worker_skips_a_copy_after_success(sqs: Any, s3: Any, s3_bucket: str, setup: Any) -> None:
    pair, make_app = setup
    app = make_app()
    ran: list[str] = []

    @app.job(once=True)
    def ingest(payload: Upload) -> None:
        ran.append(payload.name)

    send_copies(sqs, pair, app, 2)
    stats = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    assert (stats.succeeded, stats.skipped, stats.dead_lettered) == (1, 1, 0)
    assert ran == ["report.csv"] and objects(s3, s3_bucket) == []
    assert SQSBackend(pair.url, client=sqs).dead_letters() == []


def test_a_missing_object_on_a_first_delivery_is_poison_and_forgets_the_key(sqs: Any, s3: Any, s3_bucket: str,
                                                                             setup: Any) -> None:
    pair, make_app = setup
    app = make_app()

    @app.job
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(), idempotency_key="ingest-report")
    [key] = objects(s3, s3_bucket)
    s3.delete_object(Bucket=s3_bucket, Key=key)
    answer = lambda_handler(app, client=sqs)(sqs_event(sqs, pair), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}  # dead-lettered, so done here
    [letter] = SQSBackend(pair.url, client=sqs).dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and f"s3://{s3_bucket}/{key} is missing" in letter.reason
    assert app.store_record(idempotency_key="ingest-report") is None  # a redrive starts over
