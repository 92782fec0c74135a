"""The Lambda shim with a DynamoDB store: SQS (moto server) delivers copies of a job, the
store (DynamoDB on moto server) lets one run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.store import Status
from tests.aws.conftest import FakeLambdaContext, land_event, load_event
from tests.store.stores import dynamodb_endpoint, dynamodb_table


class Order(BaseModel):
    order_id: str


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> Iterator[Any]:
    dynamodb_endpoint(request)  # skips (or fails in CI) without the AWS adapter
    import boto3
    from cloudqueue_aws import ensure_queue

    sqs = boto3.client("sqs", endpoint_url=request.getfixturevalue("moto_server"), region_name="us-east-1")
    pair = ensure_queue(f"store-{uuid.uuid4().hex[:12]}", client=sqs)
    yield sqs, pair
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
    sqs.close()


def _app(request: pytest.FixtureRequest, ran: list[str]) -> cq.App:
    endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    app = cq.App("shop", backend="memory://", store=store)

    @app.job
    def ship(payload: Order) -> None:
        ran.append(payload.order_id)

    return app


def _event(app: cq.App, sqs: Any, pair: Any, keys: list[str]) -> dict[str, Any]:
    template = load_event("sqs_receipts_batch.json")
    record = template["Records"][0]
    records = []
    for key in keys:
        body = app.get_job("ship").message(Order(order_id=key), idempotency_key=key).body.decode()
        records.append({**record, "body": body, "attributes": dict(record["attributes"])})
    return land_event(sqs, {"Records": records}, pair.url, pair.arn)


def test_copies_in_one_batch_and_across_batches_run_once(request: pytest.FixtureRequest, queue: Any) -> None:
    from cloudqueue_aws import lambda_handler

    sqs, pair = queue
    ran: list[str] = []
    app = _app(request, ran)
    handler = lambda_handler(app, client=sqs)
    answer = handler(_event(app, sqs, pair, ["k1", "k1", "k2"]), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}
    assert sorted(ran) == ["k1", "k2"]
    answer = handler(_event(app, sqs, pair, ["k2", "k1"]), FakeLambdaContext(60_000))  # redelivered later
    assert answer == {"batchItemFailures": []} and sorted(ran) == ["k1", "k2"]
    record = app.store_record(idempotency_key="k1")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1


def test_a_copy_of_a_job_running_elsewhere_stays_in_the_queue(request: pytest.FixtureRequest, queue: Any) -> None:
    from cloudqueue_aws import lambda_handler

    sqs, pair = queue
    ran: list[str] = []
    app = _app(request, ran)
    store = app.store
    assert store is not None
    now = datetime.now(timezone.utc)  # another invocation holds k3 for a minute more
    store.claim("shop/key/k3", token="elsewhere", now=now, lease_until=now + timedelta(minutes=1),
                expires_at=now + timedelta(hours=1), job_type="ship", job_id="j")
    event = _event(app, sqs, pair, ["k3", "k4"])
    answer = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    k3 = event["Records"][0]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": k3}]}
    assert ran == ["k4"]
    # the claim's lease is the invocation's deadline: a Lambda cannot outlive it
    claimed = app.store_record(idempotency_key="k4")
    assert claimed is not None and claimed.status is Status.COMPLETED
