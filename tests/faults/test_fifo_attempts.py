"""Attempts count runs: a FIFO message held back behind a failing one of its group is not
dead-lettered as exhausted having run fewer times than its attempts, and the queue's own
redrive never moves a message without a cloudqueue reason.

Played on moto server: the test is the event source mapping (receive a batch, invoke the
shim, delete what it did not report), the shim settles through SQS.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from cloudqueue_aws import lambda_handler
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.retry import max_receives_for
from tests.aws.conftest import FakeLambdaContext


class Step(BaseModel):
    name: str


def test_a_held_back_fifo_message_runs_its_attempts_and_nothing_dead_letters_without_a_reason(
        sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True, prefix="fifo-attempts", visibility_timeout=timedelta(seconds=2),
                      max_receive_count=max_receives_for(3))
    app = cq.App("shop", backend="memory://")
    runs: dict[str, list[int]] = {"a": [], "b": []}

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def step(payload: Step, ctx: cq.JobContext) -> None:
        runs[payload.name].append(ctx.attempt)
        if payload.name == "a" or len(runs["b"]) == 1:  # a always fails; b fails once
            raise RuntimeError(f"{payload.name} failed")

    for name in ("a", "b"):
        sqs.send_message(QueueUrl=pair.url, MessageBody=step.message(Step(name=name)).body.decode(),
                         MessageGroupId="order-1", MessageDeduplicationId=name)
    handler = lambda_handler(app, client=sqs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(runs["b"]) < 2:
        got = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not got:
            continue
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m["Attributes"], "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": pair.arn, "awsRegion": "us-east-1"} for m in got]}
        response = handler(event, FakeLambdaContext(60_000))
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for record in event["Records"]:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=pair.url, ReceiptHandle=record["receiptHandle"])
    letters = sqs.receive_message(QueueUrl=pair.dead_letter_url, MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"], WaitTimeSeconds=1).get("Messages", [])
    reasons = [m.get("MessageAttributes", {}).get("cq-reason", {}).get("StringValue") for m in letters]
    assert runs["a"] == [1, 2, 3]  # a ran its three attempts, then went to dead letters
    assert runs["b"] == [1, 2]  # b, held back twice behind a, still got its attempts
    assert len(reasons) == 1 and reasons[0] is not None and reasons[0].startswith("exhausted: attempt 3 of 3")
