"""The Lambda shim on the core lifecycle: whole-event checks, no escaping exceptions,
dead letters that keep the producer's attributes, a queue with nowhere to dead-letter,
and the app backend's client settings."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
from cloudqueue_aws import SQSEventError, lambda_handler
from pydantic import BaseModel

import cloudqueue as cq

from .conftest import FakeLambdaContext, land_event


class Order(BaseModel):
    order_id: str


def _body(app: cq.App, order_id: str) -> str:
    return app.get_job("ship").message(Order(order_id=order_id)).body.decode()


def _app(ran: list[str], backend: str = "memory://") -> cq.App:
    app = cq.App("shop", backend=backend)

    @app.job(retry=cq.Retry(attempts=3))
    def ship(payload: Order) -> None:
        ran.append(payload.order_id)
        if payload.order_id == "exit":
            raise SystemExit(2)
        if payload.order_id == "interrupt":
            raise KeyboardInterrupt
        if payload.order_id == "base":
            raise BaseException("odd")

    return app


def _event(bodies: list[str], *, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    records = []
    for n, body in enumerate(bodies):
        record: dict[str, Any] = {
            "messageId": f"m{n}", "receiptHandle": f"h{n}", "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
            "messageAttributes": copy.deepcopy(attributes or {}), "md5OfBody": "-",
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
            "awsRegion": "us-east-1"}
        records.append(record)
    return {"Records": records}


@pytest.mark.parametrize("broken", [
    lambda r: r.pop("messageId"), lambda r: r.pop("receiptHandle"), lambda r: r.pop("attributes"),
    lambda r: r["attributes"].pop("ApproximateReceiveCount"), lambda r: r.update(body=None),
    lambda r: r["attributes"].update(ApproximateReceiveCount="many"),
])
def test_a_malformed_record_refuses_the_whole_event_before_any_job_runs(broken: Any) -> None:
    ran: list[str] = []
    app = _app(ran)
    event = _event([_body(app, "1"), _body(app, "2"), _body(app, "3")])
    broken(event["Records"][2])
    with pytest.raises(SQSEventError, match="record 2 is incomplete or malformed"):
        lambda_handler(app)(event, FakeLambdaContext(60_000))
    assert ran == []  # the first two did not run: the redelivered batch runs them once


def test_an_event_whose_queue_is_unknown_is_refused_before_any_job_runs() -> None:
    ran: list[str] = []
    app = _app(ran)
    event = _event([_body(app, "1"), _body(app, "2")])
    del event["Records"][0]["eventSourceARN"]
    with pytest.raises(SQSEventError, match="eventSourceARN"):
        lambda_handler(app)(event, FakeLambdaContext(60_000))
    assert ran == []


def test_a_record_from_another_source_refuses_the_whole_event() -> None:
    ran: list[str] = []
    app = _app(ran)
    event = _event([_body(app, "1"), _body(app, "2")])
    event["Records"][1]["eventSource"] = "aws:kinesis"
    with pytest.raises(SQSEventError, match="aws:kinesis"):
        lambda_handler(app)(event, FakeLambdaContext(60_000))
    assert ran == []


@pytest.mark.parametrize("order_id", ["exit", "interrupt", "base"])
def test_a_base_exception_from_a_job_fails_only_its_own_record(sqs: Any, make_queue: Any, order_id: str) -> None:
    pair = make_queue(prefix="orders")
    ran: list[str] = []
    app = _app(ran)
    event = land_event(sqs, _event([_body(app, "1"), _body(app, order_id), _body(app, "3")]),
                       pair.url, pair.arn)
    response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    assert ran == ["1", order_id, "3"]
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}


def test_dead_letters_keep_the_producers_message_attributes(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="orders")
    app = _app([])
    produced = {"tenant": {"stringValue": "acme", "dataType": "String"},
                "priority": {"stringValue": "7", "dataType": "Number"},
                "blob": {"binaryValue": "AAEC", "dataType": "Binary"}}
    event = land_event(sqs, _event(["{not an envelope", _body(app, "2")], attributes=produced),
                       pair.url, pair.arn)
    response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}
    [letter] = sqs.receive_message(QueueUrl=pair.dead_letter_url, MessageAttributeNames=["All"],
                                   WaitTimeSeconds=1)["Messages"]
    attributes = letter["MessageAttributes"]
    assert attributes["tenant"] == {"StringValue": "acme", "DataType": "String"}
    assert attributes["priority"] == {"StringValue": "7", "DataType": "Number"}
    assert attributes["blob"] == {"BinaryValue": b"\x00\x01\x02", "DataType": "Binary"}
    assert attributes["cq-reason"]["StringValue"].startswith("poison: not a cloudqueue envelope")


def test_a_queue_without_a_redrive_policy_keeps_its_dead_letters_and_says_so_once_per_batch(
        sqs: Any, caplog: Any) -> None:
    url = sqs.create_queue(QueueName="orders-dlq-consumer")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    app = _app([])
    event = land_event(sqs, _event(["{poison 1", "{poison 2", _body(app, "ok")]), url, arn)
    with caplog.at_level(logging.ERROR, logger="cloudqueue.aws"):
        response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    poison = [event["Records"][n]["messageId"] for n in (0, 1)]
    assert response == {"batchItemFailures": [{"itemIdentifier": m} for m in poison]}
    lines = [r for r in caplog.records if r.name == "cloudqueue.aws" and "no RedrivePolicy" in r.getMessage()]
    assert len(lines) == 1 and not any(r.exc_info for r in caplog.records)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert int(counts["ApproximateNumberOfMessagesNotVisible"]) == 3  # the poison hidden; "ok" left to the ESM
    sqs.delete_queue(QueueUrl=url)


def test_without_a_client_the_shim_uses_the_app_backends_endpoint(sqs: Any, make_queue: Any,
                                                                  moto_server: str) -> None:
    pair = make_queue(prefix="orders")
    name = pair.url.rsplit("/", 1)[-1]
    app = _app([], backend=f"sqs://{name}?endpoint_url={moto_server}&region=us-east-1")
    event = land_event(sqs, _event(["{poison"]), pair.url, pair.arn)
    response = lambda_handler(app)(event, FakeLambdaContext(60_000))  # no client=
    assert response == {"batchItemFailures": []}
    [letter] = sqs.receive_message(QueueUrl=pair.dead_letter_url, WaitTimeSeconds=1)["Messages"]
    assert letter["Body"] == "{poison"
