"""The Lambda shim when its own SQS calls fail: nothing is lost, the batch is never re-run whole.

The shim talks to moto server through a FaultProxy; the event source mapping's part
(receive, delete what the response did not report) is played by the test on a direct client.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from cloudqueue_aws import lambda_handler
from pydantic import BaseModel

import cloudqueue as cq
from tests.aws.conftest import FakeLambdaContext
from tests.faults.proxy import FaultProxy


class Order(BaseModel):
    order_id: str


def receive_event(sqs: Any, url: str, arn: str, count: int, timeout: float = 15) -> dict[str, Any]:
    """What the event source mapping would hand the function: ``count`` records from the queue."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                  MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
        for message in got.get("Messages", []):
            records.append({
                "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"], "attributes": message["Attributes"], "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": arn,
                "awsRegion": "us-east-1"})
    assert len(records) == count, f"expected {count} records, the queue gave {len(records)}"
    return {"Records": records}


def esm_deletes_successes(sqs: Any, url: str, event: dict[str, Any], response: dict[str, Any]) -> None:
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def test_dead_letter_sends_cut_mid_batch_lose_nothing_and_rerun_no_success(
        sqs: Any, make_queue: Any, fault_proxy: FaultProxy, sqs_via_proxy: Any) -> None:
    pair = make_queue(prefix="lambda-faults", visibility_timeout=timedelta(seconds=1))
    app = cq.App("shop", backend="memory://")
    runs: dict[str, int] = {}

    @app.job
    def ship(payload: Order) -> None:
        runs[payload.order_id] = runs.get(payload.order_id, 0) + 1
        if payload.order_id.startswith("cancelled"):
            raise cq.Permanent("order was cancelled")

    good = [f"ok-{n}" for n in range(3)]
    bad_bodies = ["{not an envelope", ship.message(Order(order_id="cancelled-1")).body.decode(),
                  '{"specversion":"1.0"}']
    for body in [*bad_bodies, *(ship.message(Order(order_id=o)).body.decode() for o in good)]:
        sqs.send_message(QueueUrl=pair.url, MessageBody=body)
    handler = lambda_handler(app, client=sqs_via_proxy)

    fault_proxy.cut_after_requests(3)  # the queue and DLQ lookups pass; every dead-letter send is cut
    event = receive_event(sqs, pair.url, pair.arn, 6)
    response = handler(event, FakeLambdaContext(60_000))
    bad_ids = {r["messageId"] for r in event["Records"] if r["body"] in bad_bodies}
    assert {item["itemIdentifier"] for item in response["batchItemFailures"]} == bad_ids
    esm_deletes_successes(sqs, pair.url, event, response)

    fault_proxy.pass_traffic()
    again = receive_event(sqs, pair.url, pair.arn, 3)  # back after the 1 s visibility
    assert {r["body"] for r in again["Records"]} == set(bad_bodies)
    response = handler(again, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}
    esm_deletes_successes(sqs, pair.url, again, response)

    letters = []
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=pair.dead_letter_url, MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
        letters += got
        if len(letters) >= 3:
            break
    left = sqs.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"])["Attributes"]
    enqueued, completed, dead = 6, sum(runs[o] == 1 for o in good), len(letters)
    lost = enqueued - completed - dead
    print(f"enqueued {enqueued}, completed {completed}, dead-lettered {dead}, lost {lost}, "
          f"good jobs run twice {sum(runs[o] > 1 for o in good)}")
    assert sorted(letter["Body"] for letter in letters) == sorted(bad_bodies)
    assert all(json.dumps(letter["MessageAttributes"]).count("cq-reason") == 1 for letter in letters)
    assert (completed, dead, lost) == (3, 3, 0)
    assert all(runs[o] == 1 for o in good)  # the batch never re-ran its successes
    assert int(left["ApproximateNumberOfMessages"]) + int(left["ApproximateNumberOfMessagesNotVisible"]) == 0
