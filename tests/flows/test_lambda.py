"""A flow run by the Lambda shim: children and parent arrive as SQS events (moto server),
the flow's state is in DynamoDB (moto server)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.aws.conftest import FakeLambdaContext, load_event
from tests.store.stores import dynamodb_endpoint, dynamodb_table


class Part(BaseModel):
    n: int


def _event(sqs: Any, pair: Any, count: int) -> dict[str, Any]:
    """What Lambda's event source mapping would deliver: ``count`` messages off the queue."""
    template = load_event("sqs_receipts_batch.json")["Records"][0]
    records: list[dict[str, Any]] = []
    for _ in range(20):
        if len(records) >= count:
            break
        for message in sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                           WaitTimeSeconds=1).get("Messages") or []:
            record = copy.deepcopy(template)
            record.update(body=message["Body"], messageId=message["MessageId"],
                          receiptHandle=message["ReceiptHandle"], eventSourceARN=pair.arn)
            record["attributes"]["ApproximateReceiveCount"] = "1"
            records.append(record)
    assert len(records) == count
    return {"Records": records}


def test_a_flow_runs_through_the_lambda_shim(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    import boto3
    from cloudqueue_aws import SQSBackend, ensure_queue, lambda_handler

    sqs = boto3.client("sqs", endpoint_url=request.getfixturevalue("moto_server"), region_name="us-east-1")
    pair = ensure_queue(f"flows-l-{uuid.uuid4().hex[:10]}", client=sqs)
    store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    app = cq.App("lambdaflow", backend=SQSBackend(pair.url, client=sqs), store=store)
    totals: list[int] = []

    @app.job
    def square(payload: Part) -> int:
        return payload.n * payload.n

    @app.job
    def total(payload: Part, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        totals.append(sum(ctx.flow.results))

    flow_id = app.flow(total.message(Part(n=0)), children=[square.message(Part(n=n)) for n in (1, 2, 3)])
    handler = lambda_handler(app, client=sqs)
    assert handler(_event(sqs, pair, 3), FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    assert app.get_flow(flow_id).status == "parent_enqueued" and totals == []
    assert handler(_event(sqs, pair, 1), FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    assert totals == [14]
    assert app.get_flow(flow_id).status == "succeeded"
    app.close()
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
    sqs.close()
