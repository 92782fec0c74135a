"""The Lambda shim for an app with several queues: each event settles against the queue
its source ARN names; an event from none of them is refused before any job runs."""

from __future__ import annotations

from typing import Any

import pytest
from cloudqueue_aws import SQSEventError, lambda_handler
from pydantic import BaseModel

import cloudqueue as cq

from .conftest import FakeLambdaContext, land_event


class Order(BaseModel):
    order_id: str


def _app(ran: list[str], critical: Any, default: Any, endpoint: str) -> cq.App:
    app = cq.App("shop", queues={
        "critical": f"sqs://{critical.name}?region=us-east-1&endpoint_url={endpoint}",
        "default": f"sqs://{default.name}?region=us-east-1&endpoint_url={endpoint}"})

    @app.job(queue="critical")
    def page(payload: Order) -> None:
        ran.append(f"page {payload.order_id}")
        raise cq.Permanent("nobody on call")

    @app.job
    def ship(payload: Order) -> None:
        ran.append(f"ship {payload.order_id}")

    return app


def _event(app: cq.App, job: str, order_id: str) -> dict[str, Any]:
    body = app.get_job(job).message(Order(order_id=order_id)).body.decode()
    return {"Records": [{
        "messageId": "m0", "receiptHandle": "h0", "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767225600000"},
        "messageAttributes": {}, "md5OfBody": "-", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:elsewhere", "awsRegion": "us-east-1"}]}


def test_each_event_settles_against_the_queue_it_came_from(sqs: Any, make_queue: Any,
                                                           moto_server: str) -> None:
    critical, default = make_queue(prefix="critical"), make_queue(prefix="default")
    ran: list[str] = []
    app = _app(ran, critical, default, moto_server)
    handler = lambda_handler(app, client=sqs)
    paged = land_event(sqs, _event(app, "page", "1"), critical.url, critical.arn)
    assert handler(paged, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    shipped = land_event(sqs, _event(app, "ship", "2"), default.url, default.arn)
    assert handler(shipped, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    assert ran == ["page 1", "ship 2"]
    # the Permanent failure went to the critical queue's own dead letters
    [letter] = sqs.receive_message(QueueUrl=critical.dead_letter_url, WaitTimeSeconds=1)["Messages"]
    assert '"order_id":"1"' in letter["Body"]
    assert "Messages" not in sqs.receive_message(QueueUrl=default.dead_letter_url)


def test_an_event_from_none_of_the_apps_queues_is_refused_before_any_job_runs(
        sqs: Any, make_queue: Any, moto_server: str) -> None:
    critical, default = make_queue(prefix="critical"), make_queue(prefix="default")
    ran: list[str] = []
    app = _app(ran, critical, default, moto_server)
    with pytest.raises(SQSEventError, match=r"queue 'elsewhere'.*none of the queues of app 'shop': "
                                            r"critical \(critical-.*\), default \(default-"):
        lambda_handler(app, client=sqs)(_event(app, "ship", "1"), FakeLambdaContext(60_000))
    assert ran == []
