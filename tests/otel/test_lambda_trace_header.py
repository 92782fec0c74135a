"""The Lambda shim joins the X-Ray contexts a record arrives with: the record's
``AWSTraceHeader`` (the context it was sent under) and the invocation's ``_X_AMZN_TRACE_ID``.
They are links of the job's span under the producer's context, and the record's becomes
the parent when the message carries no producer context. On a real (moto) queue."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.envelope import with_traceparent
from tests.aws.conftest import FakeLambdaContext
from tests.conftest import missing_component

from .conftest import Telemetry
from .test_lambda import receive_event

PRODUCER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SENT_UNDER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
INVOCATION = "Root=1-674a1b2c-0123456789abcdef01234567;Parent=1122334455667788;Sampled=1;Lineage=a1b2c3:0"


class Order(BaseModel):
    order_id: str


@pytest.fixture(autouse=True)
def _invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue_aws", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
    monkeypatch.setenv("_X_AMZN_TRACE_ID", INVOCATION)  # the runtime sets it per invocation


def _run(telemetry: Telemetry, sqs: Any, make_queue: Any, producer: str | None) -> Any:
    """Send one job under X-Ray (with ``producer`` as its envelope's context, if any) and
    run the event SQS gives back through the shim; the job's span."""
    from cloudqueue_aws import SQSBackend, lambda_handler

    pair = make_queue(prefix="xray")
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs), middleware=[telemetry.middleware])
    telemetry.middleware.watch(app)

    @app.job
    def ship(payload: Order) -> None:
        pass

    body = ship.message(Order(order_id="1")).body
    if producer is not None:
        body = with_traceparent(body, producer)
    sqs.send_message(QueueUrl=pair.url, MessageBody=body.decode(),
                     MessageSystemAttributes={"AWSTraceHeader": {"StringValue": SENT_UNDER, "DataType": "String"}})
    event = receive_event(sqs, pair.url, pair.arn, 1)
    assert event["Records"][0]["attributes"]["AWSTraceHeader"] == SENT_UNDER  # as SQS delivers it
    assert lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    return telemetry.span("process ship")


def test_under_the_producers_context_both_xray_contexts_are_links(
        telemetry: Telemetry, sqs: Any, make_queue: Any) -> None:
    process = _run(telemetry, sqs, make_queue, PRODUCER)
    assert (process.context.trace_id, process.parent.span_id) == (int(PRODUCER[3:35], 16), int(PRODUCER[36:52], 16))
    assert [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}", link.context.trace_flags.sampled)
            for link in process.links] == [
        ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", True),
        ("674a1b2c0123456789abcdef01234567", "1122334455667788", True)]


def test_without_a_producer_context_the_record_joins_the_trace_it_was_sent_under(
        telemetry: Telemetry, sqs: Any, make_queue: Any) -> None:
    process = _run(telemetry, sqs, make_queue, None)
    assert f"{process.context.trace_id:032x}" == "5759e988bd862e3fe1be46a994272793"
    assert f"{process.parent.span_id:016x}" == "53995c3f42cd8ad8" and process.parent.is_remote
    assert [f"{link.context.span_id:016x}" for link in process.links] == ["1122334455667788"]
