"""The OpenTelemetry middleware across a real (moto) SQS queue: a producer sends, the Lambda
shim consumes the event SQS gives back, and the SDK's exporter and reader see one trace per
job and counts that match what the shim reported."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.aws.conftest import FakeLambdaContext
from tests.aws.esm import esm_deletes_successes, receive_event
from tests.conftest import missing_component

from .conftest import Telemetry


class Order(BaseModel):
    order_id: str


@pytest.fixture(autouse=True)
def _aws_adapter() -> None:
    try:
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue_aws", 'install the AWS adapter: pip install -e "adapters/aws[test]"')


def _app(telemetry: Telemetry, sqs: Any, url: str) -> cq.App:
    from cloudqueue_aws import SQSBackend

    app = cq.App("shop", backend=SQSBackend(url, client=sqs), middleware=[telemetry.middleware])
    telemetry.middleware.watch(app)
    return app


def test_the_send_and_process_spans_of_one_job_share_a_trace_across_sqs_and_the_lambda_shim(
        telemetry: Telemetry, sqs: Any, make_queue: Any) -> None:
    from cloudqueue_aws import lambda_handler
    from opentelemetry.trace import SpanKind

    pair = make_queue(prefix="otel")
    app = _app(telemetry, sqs, pair.url)

    @app.job
    def ship(payload: Order) -> None:
        pass

    job_id = ship.enqueue(Order(order_id="1"))
    event = receive_event(sqs, pair.url, pair.arn, 1)
    # the platform's own span around the invocation (as a Lambda layer makes one)
    tracer = telemetry.middleware._tracer
    with tracer.start_as_current_span("orders-worker invoke", kind=SpanKind.SERVER) as invocation:
        response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}

    send, process = telemetry.span("send ship"), telemetry.span("process ship")
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [invocation.get_span_context().span_id]
    name = pair.url.rsplit("/", 1)[-1]
    for span in (send, process):
        assert span.attributes["messaging.system"] == "aws_sqs"
        assert span.attributes["messaging.destination.name"] == name
        assert span.attributes["messaging.message.id"] == job_id


def test_counts_on_sqs_match_what_the_shim_did(telemetry: Telemetry, sqs: Any, make_queue: Any) -> None:
    from cloudqueue_aws import lambda_handler

    pair = make_queue(prefix="otel")
    app = _app(telemetry, sqs, pair.url)

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(0))))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        if payload.order_id == "flaky" and ctx.attempt == 1:
            raise TimeoutError("processor timed out")

    @app.job
    def cancel(payload: Order) -> None:
        raise cq.Permanent("already shipped")

    charge.enqueue_many([Order(order_id="ok"), Order(order_id="flaky")])
    cancel.enqueue(Order(order_id="1"))
    sqs.send_message(QueueUrl=pair.url, MessageBody="not json")
    handler = lambda_handler(app, client=sqs)

    first = receive_event(sqs, pair.url, pair.arn, 4)
    response = handler(first, FakeLambdaContext(60_000))
    [flaky] = [r for r in first["Records"] if '"flaky"' in r["body"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky["messageId"]}]}
    esm_deletes_successes(sqs, first, response, pair.url)
    second = receive_event(sqs, pair.url, pair.arn, 1)
    assert second["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    response = handler(second, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}
    esm_deletes_successes(sqs, second, response, pair.url)

    kind = ("cloudqueue.job.type", "cloudqueue.reason.kind")
    assert telemetry.counts("cloudqueue.jobs.enqueued") == {"charge": 2, "cancel": 1}
    assert telemetry.counts("cloudqueue.jobs.completed") == {"charge": 2}
    assert telemetry.counts("cloudqueue.jobs.retried", kind) == {("charge", "failed"): 1}
    assert telemetry.counts("cloudqueue.jobs.failed", kind) == {("charge", "failed"): 1,
                                                               ("cancel", "permanent"): 1}
    assert telemetry.counts("cloudqueue.jobs.dead_lettered", kind) == {("cancel", "permanent"): 1,
                                                                      (None, "poison"): 1}
    dead = sqs.get_queue_attributes(QueueUrl=pair.dead_letter_url,
                                    AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert dead["ApproximateNumberOfMessages"] == "2"
    # the gauges ask SQS: figures it gives, and no oldest age (SQS has no such attribute)
    where = {"messaging.system": "aws_sqs", "messaging.destination.name": pair.url.rsplit("/", 1)[-1]}
    assert [(a, p.value) for a, p in telemetry.points("cloudqueue.queue.waiting")] == [(where, 0)]
    assert [(a, p.value) for a, p in telemetry.points("cloudqueue.queue.dead_lettered")] == [(where, 2)]
    assert telemetry.points("cloudqueue.queue.oldest_age") == []


def test_a_send_the_queue_refuses_ends_its_span_in_error_and_counts_nothing(
        telemetry: Telemetry, sqs: Any, make_queue: Any) -> None:
    from opentelemetry.trace import StatusCode

    pair = make_queue(prefix="otel")
    app = _app(telemetry, sqs, pair.url)

    @app.job
    def ship(payload: Order) -> None:
        pass

    ship.enqueue(Order(order_id="1"))
    sqs.delete_queue(QueueUrl=pair.url)
    with pytest.raises(cq.QueueNotFound):
        ship.enqueue(Order(order_id="2"))
    ok, refused = (s for s in telemetry.spans() if s.name == "send ship")
    assert ok.status.status_code is StatusCode.UNSET
    assert refused.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in refused.events] == ["cloudqueue._errors.QueueNotFound"]
    assert telemetry.counts("cloudqueue.jobs.enqueued") == {"ship": 1}
