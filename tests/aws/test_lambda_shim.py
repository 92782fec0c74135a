"""The Lambda shim on recorded SQS events, against real (moto) queues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import cloudqueue_aws
import pytest
from cloudqueue_aws import SQSBackend, SQSEventError, lambda_handler
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.testing import FakeClock

from .conftest import FakeLambdaContext, land_event, load_event


class Receipt(BaseModel):
    to: str
    order_id: str


class Charge(BaseModel):
    order_id: str
    amount_cents: int


class Cancel(BaseModel):
    order_id: str
    reason: str


def shop_app(ran: list[str]) -> cq.App:
    """The app the recorded events were produced by; ``ran`` collects what ran."""
    app = cq.App("shop", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt, ctx: cq.JobContext) -> None:
        ran.append(f"send_receipt {payload.order_id}")

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def charge_card(payload: Charge) -> None:
        ran.append(f"charge_card {payload.order_id}")
        if payload.order_id.startswith("flaky"):
            raise RuntimeError("card processor timed out")

    @app.job
    def cancel_order(payload: Cancel) -> None:
        ran.append(f"cancel_order {payload.order_id}")
        raise cq.Permanent("order already shipped")

    return app


def ids(event: dict[str, Any], *positions: int) -> list[str]:
    return [event["Records"][n]["messageId"] for n in positions]


def esm_deletes_successes(sqs: Any, event: dict[str, Any], response: dict[str, Any], url: str) -> None:
    """What the event source mapping does with the response: delete every record not reported."""
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in event["Records"]:
        if record["messageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def test_mixed_batch_reports_only_retryable_failures_and_dead_letters_the_rest(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="orders", visibility_timeout=timedelta(seconds=30))
    event = land_event(sqs, load_event("sqs_orders_mixed_batch.json"), pair.url, pair.arn)
    ran: list[str] = []
    handler = lambda_handler(shop_app(ran), client=sqs)

    response = handler(event, FakeLambdaContext(remaining_ms=60_000))

    # only the flaky charge on its first attempt goes back to the queue for a retry
    assert response == {"batchItemFailures": [{"itemIdentifier": ids(event, 2)[0]}]}
    assert ran == ["send_receipt 1001", "charge_card 1002", "charge_card flaky-1003", "send_receipt 1004",
                   "cancel_order 1005", "charge_card flaky-1008", "send_receipt 1010"]
    esm_deletes_successes(sqs, event, response, pair.url)

    backend = SQSBackend(pair.url, client=sqs)
    letters = {letter.message_id: letter for letter in backend.dead_letters()}
    by_source = {}
    for message in _all_messages(sqs, pair.dead_letter_url):
        source = message["MessageAttributes"]["cq-source-message-id"]["StringValue"]
        by_source[source] = (message["Body"], letters[message["MessageId"]].reason)
    permanent, not_json, unknown, exhausted, bad_payload = ids(event, 4, 5, 6, 7, 8)
    assert set(by_source) == {permanent, not_json, unknown, exhausted, bad_payload}
    records = {r["messageId"]: r for r in event["Records"]}
    for source, (body, _) in by_source.items():
        assert body == records[source]["body"]  # the original message, intact
    assert by_source[permanent][1] == "permanent: order already shipped"
    assert by_source[not_json][1].startswith("poison: not a cloudqueue envelope")
    assert by_source[unknown][1].startswith("poison: unknown job type 'refund_order'")
    assert by_source[exhausted][1].startswith("exhausted: attempt 3 of 3 failed: RuntimeError")
    assert by_source[bad_payload][1].startswith("poison: invalid payload for job 'charge_card'")
    assert "'amount_cents'" in by_source[bad_payload][1]

    # the retried message waits out its 1 s backoff (not the queue's 30 s timeout), then
    # comes back with the queue's receive count as its attempt
    assert backend.receive(max_messages=10) == []
    time.sleep(1.0)  # the backoff
    [again] = backend.receive(max_messages=10, wait=timedelta(seconds=10))  # a long poll: bounded
    assert again.message_id == ids(event, 2)[0]
    assert again.attempt == 2
    assert json.loads(again.body)["data"]["order_id"] == "flaky-1003"


def _all_messages(sqs: Any, url: str) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                              MessageAttributeNames=["All"]).get("Messages") or []
    return list(got)


def test_dead_lettered_message_redrives_back_and_runs(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="orders")
    event = land_event(sqs, load_event("sqs_orders_mixed_batch.json"), pair.url, pair.arn)
    event["Records"] = event["Records"][4:5]  # the cancelled order
    ran: list[str] = []
    app = shop_app(ran)
    response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}
    esm_deletes_successes(sqs, event, response, pair.url)

    backend = SQSBackend(pair.url, client=sqs)
    [letter] = backend.dead_letters()
    assert backend.redrive([letter.message_id]) == 1
    assert backend.dead_letters() == []
    [back] = backend.receive(max_messages=10)
    assert back.body == event["Records"][0]["body"].encode()
    assert "cq-reason" not in back.attributes  # the dead-letter note does not travel back
    assert back.attempt == 1


def test_fifo_failure_fails_the_rest_of_its_group_unstarted(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True, prefix="payments")
    event = land_event(sqs, load_event("sqs_payments_fifo_batch.json"), pair.url, pair.arn)
    ran: list[str] = []

    response = lambda_handler(shop_app(ran), client=sqs)(event, FakeLambdaContext(60_000))

    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ids(event, 1, 2)]}
    # the receipt of order 3001 waits behind its failed charge; order 3002 is unaffected
    assert ran == ["charge_card 3001", "charge_card flaky-3001", "charge_card 3002", "send_receipt 3002"]


def test_fifo_dead_letters_keep_their_group(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True, prefix="payments")
    event = land_event(sqs, load_event("sqs_payments_fifo_batch.json"), pair.url, pair.arn)
    for record in event["Records"]:  # make the flaky charge's last attempt
        record["attributes"]["ApproximateReceiveCount"] = "3"
    ran: list[str] = []
    response = lambda_handler(shop_app(ran), client=sqs)(event, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}  # dead-lettered: it left the group
    assert "send_receipt 3001" in ran
    [letter] = _all_messages(sqs, pair.dead_letter_url)
    assert letter["Body"] == event["Records"][1]["body"]


def test_deadline_stops_starting_records_and_returns_the_rest_at_once(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="receipts", visibility_timeout=timedelta(seconds=60))
    event = land_event(sqs, load_event("sqs_receipts_batch.json"), pair.url, pair.arn)
    context = FakeLambdaContext(remaining_ms=50_000)
    clock = FakeClock()
    app = cq.App("shop", backend="memory://", clock=clock)
    seen: list[tuple[str, timedelta | None]] = []

    @app.job
    def send_receipt(payload: Receipt, ctx: cq.JobContext) -> None:
        seen.append((payload.order_id, ctx.remaining()))
        clock.advance(timedelta(seconds=20))  # each receipt takes 20 s of the invocation

    response = lambda_handler(app, client=sqs, safety_margin=timedelta(seconds=5))(event, context)

    # 50 s left: three receipts start (50, 30, 10 s left); at -10 s the rest are not started
    assert seen == [("2000", timedelta(seconds=50)), ("2001", timedelta(seconds=30)),
                    ("2002", timedelta(seconds=10))]
    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ids(event, 3, 4, 5)]}
    esm_deletes_successes(sqs, event, response, pair.url)
    # visible again at once, not after the queue's 60 s visibility timeout
    back = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=10).get("Messages") or []
    assert sorted(m["MessageId"] for m in back) == sorted(ids(event, 3, 4, 5))


def test_job_context_deadline_comes_from_the_lambda_context() -> None:
    app = cq.App("shop", backend="memory://")
    left: list[timedelta | None] = []

    @app.job
    def send_receipt(payload: Receipt, ctx: cq.JobContext) -> None:
        left.append(ctx.remaining())

    event = load_event("sqs_receipts_batch.json")
    event["Records"] = event["Records"][:1]
    lambda_handler(app)(event, FakeLambdaContext(remaining_ms=120_000))
    [remaining] = left
    assert remaining is not None and timedelta(seconds=100) < remaining <= timedelta(seconds=120)


@pytest.mark.parametrize(("event", "named"), [
    ({"Records": [{"eventSource": "aws:s3", "s3": {}}]}, "records from aws:s3"),
    ({"Records": [{"EventSource": "aws:sns", "Sns": {}}]}, "records from aws:sns"),
    ({"httpMethod": "POST", "path": "/jobs", "requestContext": {}}, "an HTTP event"),
    ({"detail-type": "Scheduled Event", "source": "aws.events"}, "an EventBridge event"),
    ({"orders": [1, 2]}, "an object with keys orders"),
    ("not an event", "a str"),
])
def test_an_event_that_is_not_sqs_is_refused_by_name(event: Any, named: str) -> None:
    handler = lambda_handler(cq.App("shop", backend="memory://"))
    with pytest.raises(SQSEventError, match=named):
        handler(event, FakeLambdaContext(60_000))
    assert issubclass(SQSEventError, cq.ConfigurationError)


def test_a_batch_of_successes_imports_no_boto3(tmp_path: Any) -> None:
    event = load_event("sqs_receipts_batch.json")
    (tmp_path / "event.json").write_text(json.dumps(event))
    program = f"""
import json, sys
from pydantic import BaseModel
import cloudqueue as cq
import cloudqueue_aws

class Receipt(BaseModel):
    to: str
    order_id: str

app = cq.App("shop", backend="memory://")

@app.job
def send_receipt(payload: Receipt) -> None:
    pass

handler = cloudqueue_aws.lambda_handler(app)
response = handler(json.load(open({str(tmp_path / "event.json")!r})), None)
assert response == {{"batchItemFailures": []}}, response
print(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")))
"""
    env = {k: v for k, v in os.environ.items() if k != "CLOUDQUEUE_URL"}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_package_exports_are_explicit() -> None:
    for name in cloudqueue_aws.__all__:
        assert getattr(cloudqueue_aws, name) is not None


def test_a_dead_letter_that_cannot_be_sent_is_reported_failed_so_nothing_is_lost(
        sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="orders")
    recorded = load_event("sqs_orders_mixed_batch.json")
    recorded["Records"] = recorded["Records"][4:7]  # a Permanent, a body that is not JSON, an unknown job
    event = land_event(sqs, recorded, pair.url, pair.arn)
    sqs.delete_queue(QueueUrl=pair.dead_letter_url)  # the dead-letter queue is gone

    response = lambda_handler(shop_app([]), client=sqs)(event, FakeLambdaContext(60_000))

    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ids(event, 0, 1, 2)]}
    attrs = sqs.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"])["Attributes"]
    assert int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 3  # still in the source queue


def test_the_dead_letter_queue_is_looked_up_once_per_handler(
        sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue(prefix="orders")
    handler = lambda_handler(shop_app([]), client=sqs)
    lookups = record_calls("GetQueueAttributes")
    recorded = load_event("sqs_orders_mixed_batch.json")
    recorded["Records"] = recorded["Records"][5:7]  # two poison messages
    for _ in range(2):
        event = land_event(sqs, recorded, pair.url, pair.arn)
        assert handler(event, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    assert len(lookups) == 1 and "RedrivePolicy" in lookups[0]["AttributeNames"]
    assert len(_all_messages(sqs, pair.dead_letter_url)) == 4
