"""Fixtures for the AWS adapter: boto3 clients on the moto server, fresh queues, events."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_component

EVENTS = Path(__file__).parent.parent / "events"


@pytest.fixture(scope="session")
def sqs(moto_server: str) -> Iterator[Any]:
    """A boto3 SQS client talking to the moto server."""
    try:
        import boto3
    except ImportError:
        missing_component("boto3", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
    client = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    yield client
    client.close()


@pytest.fixture
def make_queue(sqs: Any) -> Iterator[Any]:
    """``make_queue(fifo=False, **ensure_queue_options)``: a fresh queue pair, deleted afterwards."""
    from cloudqueue_aws import QueuePair, ensure_queue

    made: list[QueuePair] = []

    def make(*, fifo: bool = False, prefix: str = "t", **options: Any) -> QueuePair:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
        pair = ensure_queue(name, client=sqs, **options)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        for url in (pair.url, pair.dead_letter_url):
            try:
                sqs.delete_queue(QueueUrl=url)
            except Exception:  # already gone
                pass


def load_event(name: str) -> dict[str, Any]:
    """A recorded SQS event from tests/events/."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def land_event(sqs: Any, event: dict[str, Any], queue_url: str, queue_arn: str) -> dict[str, Any]:
    """Put a recorded event's messages on a real (moto) queue and return the event as
    Lambda would deliver it from there: the same records, now with that queue's ARN and
    the message ids and receipt handles SQS gave them. Recorded attributes (receive
    counts, group ids) are kept."""
    landed = copy.deepcopy(event)
    fifo = queue_url.endswith(".fifo")
    for record in landed["Records"]:
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": record["body"]}
        if fifo:
            params["MessageGroupId"] = record["attributes"]["MessageGroupId"]
            params["MessageDeduplicationId"] = record["attributes"]["MessageDeduplicationId"]
        sqs.send_message(**params)
    received: dict[str, list[dict[str, Any]]] = {}
    while sum(map(len, received.values())) < len(landed["Records"]):
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=30).get("Messages") or []
        assert got, "the landed messages did not all come back from the queue"
        for message in got:
            received.setdefault(message["Body"], []).append(message)
    for record in landed["Records"]:
        message = received[record["body"]].pop(0)
        record["messageId"] = message["MessageId"]
        record["receiptHandle"] = message["ReceiptHandle"]
        record["eventSourceARN"] = queue_arn
    return landed


class FakeLambdaContext:
    """The part of Lambda's context object the shim reads, on a clock the test moves."""

    function_name = "orders-worker"
    aws_request_id = "6bc28136-0b3a-4c3e-9d43-2b1e1c2f5e10"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def record_calls(sqs: Any) -> Iterator[Any]:
    """``record_calls("SendMessageBatch")``: a list that fills with each such call's parameters."""
    registered: list[tuple[str, Any]] = []

    def start(operation: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            seen.append(params)

        event = f"provide-client-params.sqs.{operation}"
        sqs.meta.events.register(event, record)
        registered.append((event, record))
        return seen

    yield start
    for event, handler in registered:
        sqs.meta.events.unregister(event, handler)
