"""The SQS backend against moto: addressing, batching, sizes, delays, queues, dead letters."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from cloudqueue_aws import SQSBackend, ensure_queue, from_url
from cloudqueue_aws._address import parse_arn, parse_url
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.envelope import decode
from cloudqueue.testing import FakeClock


class Note(BaseModel):
    text: str


def test_url_names_queue_region_endpoint_and_options() -> None:
    address = parse_url("sqs://orders.fifo?region=eu-west-1&endpoint_url=http://127.0.0.1:5000"
                        "&visibility_timeout=45&wait=5")
    assert (address.name, address.fifo, address.region, address.endpoint_url) == \
        ("orders.fifo", True, "eu-west-1", "http://127.0.0.1:5000")
    assert (address.visibility_timeout, address.wait) == (timedelta(seconds=45), timedelta(seconds=5))


def test_url_may_be_a_full_queue_url() -> None:
    address = parse_url("sqs://sqs.eu-central-1.amazonaws.com/123456789012/orders")
    assert address.queue_url == "https://sqs.eu-central-1.amazonaws.com/123456789012/orders"
    assert (address.name, address.region) == ("orders", "eu-central-1")


@pytest.mark.parametrize(("url", "message"), [
    ("sqs://orders?regoin=eu-west-1", "did you mean 'region'"),
    ("sqs://", "names no queue"),
    ("sqs://orders?wait=soon", "number of seconds"),
    ("sqs://host/only-one-segment/extra/x", "sqs://<queue-name>"),
])
def test_bad_urls_are_refused_with_the_fix(url: str, message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        parse_url(url)


def test_arn_parses_and_rejects_others() -> None:
    arn = parse_arn("arn:aws:sqs:us-east-2:123456789012:orders.fifo")
    assert (arn.region, arn.account, arn.name) == ("us-east-2", "123456789012", "orders.fifo")
    with pytest.raises(cq.ConfigurationError, match="not an SQS queue ARN"):
        parse_arn("arn:aws:sns:us-east-2:123456789012:topic")


def test_app_opens_sqs_urls_through_the_entry_point(moto_server: str, make_queue: Any) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=f"{pair.name and 'sqs://' + pair.name}?region=us-east-1"
                                 f"&endpoint_url={moto_server}")
    done: list[str] = []

    @app.job
    def note(payload: Note) -> None:
        done.append(payload.text)

    assert isinstance(app.backend, SQSBackend)
    note.enqueue(Note(text="hello"))
    app.drain()
    assert done == ["hello"]
    app.close()


def test_enqueue_many_packs_batches_of_ten(sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job
    def note(payload: Note) -> None: ...

    sent = record_calls("SendMessageBatch")
    job_ids = note.enqueue_many([Note(text=str(n)) for n in range(25)])
    assert sorted(len(c["Entries"]) for c in sent) == [5, 10, 10]  # chunks go out at once
    assert len(set(job_ids)) == 25
    assert app.backend.stats().waiting == 25


def test_batches_stay_within_the_queue_size_limit(sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue()
    sqs.set_queue_attributes(QueueUrl=pair.url, Attributes={"MaximumMessageSize": "262144"})
    backend = SQSBackend(pair.url, client=sqs)
    app = cq.App("shop", backend=backend)

    @app.job
    def note(payload: Note) -> None: ...

    sent = record_calls("SendMessageBatch")
    note.enqueue_many([Note(text="x" * 100_000) for _ in range(5)])
    assert [len(c["Entries"]) for c in sent] == [2, 2, 1]
    assert backend.capabilities.max_message_size == 262144


def test_a_message_over_the_limit_raises_before_anything_is_sent(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    sqs.set_queue_attributes(QueueUrl=pair.url, Attributes={"MaximumMessageSize": "1024"})
    backend = SQSBackend(pair.url, client=sqs)
    app = cq.App("shop", backend=backend)

    @app.job
    def note(payload: Note) -> None: ...

    small = cq.OutgoingMessage(body=b'{"a":1}', job_id="s", job_type="note")
    large = cq.OutgoingMessage(body=b"z" * 3000, job_id="l", job_type="note")
    with pytest.raises(cq.PayloadError, match=r"3000 bytes, over .* limit of 1024"):
        backend.send([small, large])
    with pytest.raises(cq.PayloadError, match="1024"):
        note.enqueue(Note(text="y" * 2000))
    assert backend.stats().waiting == 0


def test_bodies_that_are_not_sqs_text_arrive_byte_for_byte(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    backend = SQSBackend(pair.url, client=sqs)
    raw = b"\x00\xff not text"
    backend.send([cq.OutgoingMessage(body=raw, job_id="g", job_type="?")])
    [delivery] = backend.receive()
    assert delivery.body == raw


def test_entries_failing_retryably_are_sent_again_and_the_rest_reported(make_queue: Any) -> None:
    import boto3
    from botocore.stub import Stubber
    from cloudqueue_aws import BatchSendError

    client = boto3.client("sqs", region_name="us-east-1")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    stub = Stubber(client)
    stub.add_response("get_queue_attributes", {"Attributes": {
        "QueueArn": "arn:aws:sqs:us-east-1:123456789012:orders", "MaximumMessageSize": "262144"}})
    stub.add_response("send_message_batch", {
        "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
        "Failed": [{"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"},
                   {"Id": "2", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "bad"}]})
    stub.add_response("send_message_batch", {
        "Successful": [{"Id": "1", "MessageId": "m1", "MD5OfMessageBody": "x"}], "Failed": []})
    backend = SQSBackend(url, client=client)
    messages = [cq.OutgoingMessage(body=b'{"n":%d}' % n, job_id=f"job-{n}", job_type="note")
                for n in range(3)]
    with stub, pytest.raises(BatchSendError) as caught:
        backend.send(messages)
    assert caught.value.sent == ["job-0", "job-1"]
    assert caught.value.failed == {"job-2": ("InvalidParameterValue", "bad")}
    assert isinstance(caught.value, cq.BackendError)


def test_delays_up_to_15_minutes_use_delay_seconds(sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job
    def note(payload: Note) -> None: ...

    sent = record_calls("SendMessageBatch")
    note.enqueue(Note(text="soon"), delay=timedelta(minutes=10))
    assert sent[0]["Entries"][0]["DelaySeconds"] == 600
    assert "cqnotbefore" not in sent[0]["Entries"][0]["MessageBody"]
    assert app.backend.stats().delayed == 1


def test_a_job_due_in_three_days_hops_until_it_is_due(sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue()
    clock = FakeClock()
    backend = SQSBackend(pair.url, client=sqs)
    app = cq.App("shop", backend=backend, clock=clock)
    done: list[str] = []

    @app.job
    def remind(payload: Note) -> None:
        done.append(payload.text)

    sent = record_calls("SendMessageBatch")
    hops = record_calls("SendMessage")
    message = remind.message(Note(text="renew"), delay=timedelta(days=3))
    backend.send([message])
    assert sent[0]["Entries"][0]["DelaySeconds"] == 900  # the longest SQS allows
    not_before = decode(message.body).not_before_at
    assert not_before == clock.now() + timedelta(days=3)

    # the 15 minutes are up, the job is not due yet: it is sent on, the original deleted
    early = dataclasses.replace(message, delay=timedelta(0))
    backend.send([early])
    clock.advance(timedelta(minutes=15))
    report = app.drain()
    assert (report.hopped, done) == (1, [])
    assert hops[-1]["DelaySeconds"] == 900 and hops[-1]["MessageBody"] == early.body.decode()
    stats = backend.stats()
    assert (stats.waiting, stats.in_flight, stats.delayed) == (0, 0, 2)

    # the last hop arrives when it is due: the job runs
    backend.purge()
    backend.send([early])
    clock.advance(timedelta(days=3))
    assert app.drain().succeeded == 1
    assert done == ["renew"]


def test_fifo_queues_refuse_delays(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job
    def note(payload: Note) -> None: ...

    with pytest.raises(cq.UnsupportedFeature):
        note.enqueue(Note(text="later"), delay=timedelta(seconds=5))


def test_fifo_send_uses_ordering_key_and_idempotency_key(sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue(fifo=True)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job
    def note(payload: Note) -> None: ...

    sent = record_calls("SendMessageBatch")
    note.enqueue(Note(text="a"), ordering_key="customer-7", idempotency_key="note-a")
    note.enqueue(Note(text="b"))
    first, second = (c["Entries"][0] for c in sent)
    assert (first["MessageGroupId"], first["MessageDeduplicationId"]) == ("customer-7", "note-a")
    assert len(second["MessageDeduplicationId"]) == 64  # a content hash without a key
    assert note.enqueue(Note(text="a"), ordering_key="customer-7", idempotency_key="note-a") == \
        decode(first["MessageBody"]).id
    assert app.backend.stats().waiting == 2  # the queue dropped the duplicate


def test_redrive_policy_moves_a_message_to_dead_letters_after_max_receive_count(
        sqs: Any, make_queue: Any) -> None:
    pair = make_queue(max_receive_count=2)
    backend = SQSBackend(pair.url, client=sqs, visibility_timeout=timedelta(seconds=1))
    backend.send([cq.OutgoingMessage(body=b'{"crash":true}', job_id="c", job_type="note")])
    for attempt in (1, 2):  # a consumer that dies twice
        [delivery] = backend.receive(wait=timedelta(seconds=2))
        assert delivery.attempt == attempt
    import time

    time.sleep(1.2)
    assert backend.receive() == []  # the third receive finds it moved
    [letter] = backend.dead_letters()
    assert letter.body == b'{"crash":true}'
    assert letter.reason.startswith("max receives exceeded")
    assert backend.stats().dead_lettered == 1


def test_redrive_falls_back_to_receive_send_delete_where_move_tasks_are_missing(
        sqs: Any, make_queue: Any, record_calls: Any) -> None:
    pair = make_queue()
    backend = SQSBackend(pair.url, client=sqs)
    moves = record_calls("StartMessageMoveTask")
    for n in range(3):
        sqs.send_message(QueueUrl=pair.dead_letter_url, MessageBody=f'{{"n":{n}}}', MessageAttributes={
            "cq-reason": {"DataType": "String", "StringValue": "permanent: no"}})
    assert [letter.reason for letter in backend.dead_letters()] == ["permanent: no"] * 3
    assert backend.redrive() == 3
    assert len(moves) == 1  # tried once; moto has no StartMessageMoveTask
    bodies = sorted(d.body for d in backend.receive(max_messages=10))
    assert bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert backend.dead_letters() == []


def test_redrive_of_an_unknown_id_moves_nothing(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    backend = SQSBackend(pair.url, client=sqs)
    sqs.send_message(QueueUrl=pair.dead_letter_url, MessageBody="{}")
    with pytest.raises(cq.QueueNotFound, match="no dead letter with id nope"):
        backend.redrive(["nope"])
    assert len(backend.dead_letters()) == 1


def test_purge_empties_dead_letters(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    backend = SQSBackend(pair.url, client=sqs)
    for _ in range(2):
        sqs.send_message(QueueUrl=pair.dead_letter_url, MessageBody="{}")
    assert backend.purge_dead_letters() == 2
    assert backend.dead_letters() == []


def test_ensure_queue_is_idempotent_and_wires_both_redrive_policies(sqs: Any, record_calls: Any) -> None:
    first = ensure_queue("orders-ensure", client=sqs, max_receive_count=3)
    asked = record_calls("SetQueueAttributes")
    again = ensure_queue("orders-ensure", client=sqs, max_receive_count=7)
    assert (first.url, first.dead_letter_url) == (again.url, again.dead_letter_url)
    attrs = sqs.get_queue_attributes(QueueUrl=again.url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": again.dead_letter_arn,
                                                  "maxReceiveCount": 7}
    # moto neither keeps nor enforces RedriveAllowPolicy: check what the service was asked
    [allow] = [c["Attributes"]["RedriveAllowPolicy"] for c in asked
               if c["QueueUrl"] == again.dead_letter_url and "RedriveAllowPolicy" in c["Attributes"]]
    assert json.loads(allow) == {"redrivePermission": "byQueue", "sourceQueueArns": [again.arn]}
    fifo = ensure_queue("orders-ensure.fifo", client=sqs)
    assert fifo.dead_letter_url.endswith("orders-ensure-dlq.fifo")
    for url in (first.url, first.dead_letter_url, fifo.url, fifo.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)


def test_a_missing_queue_is_queue_not_found(sqs: Any) -> None:
    backend = from_url("sqs://no-such-queue", client=sqs)
    with pytest.raises(cq.QueueNotFound, match="no-such-queue") as caught:
        backend.stats()
    assert type(caught.value.__cause__).__module__.startswith("botocore")


def test_an_unreachable_endpoint_is_backend_unavailable() -> None:
    import boto3
    from botocore.config import Config

    from tests.conftest import free_port

    client = boto3.client("sqs", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}",
                          config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                        connect_timeout=1))
    with pytest.raises(cq.BackendUnavailable):
        SQSBackend("orders", client=client).stats()


@pytest.mark.parametrize(("code", "status", "expected"), [
    ("AWS.SimpleQueueService.NonExistentQueue", 400, cq.QueueNotFound),
    ("QueueDoesNotExist", 400, cq.QueueNotFound),
    ("AccessDenied", 403, cq.PermissionDenied),
    ("AccessDeniedException", 400, cq.PermissionDenied),
    ("RequestThrottled", 400, cq.Throttled),
    ("ThrottlingException", 400, cq.Throttled),
    ("Throttling", 400, cq.Throttled),
    ("InternalFailure", 500, cq.BackendUnavailable),
    ("ServiceUnavailable", 503, cq.BackendUnavailable),
    ("InvalidParameterValue", 400, cq.BackendError),
])
def test_botocore_errors_are_translated(code: str, status: int, expected: type[Exception]) -> None:
    from botocore.exceptions import ClientError
    from cloudqueue_aws._errors import translate

    error = ClientError({"Error": {"Code": code, "Message": "m"},
                         "ResponseMetadata": {"HTTPStatusCode": status}}, "SendMessage")
    mapped = translate(error, "SendMessage(orders)")
    assert type(mapped) is expected
    assert "SendMessage(orders)" in str(mapped)


def test_a_standard_queue_drops_a_key_repeated_by_this_sender(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job
    def note(payload: Note) -> None: ...

    same = [note.message(Note(text="x"), idempotency_key="k-1") for _ in range(2)]
    first, second = note.enqueue_many(same)
    third = note.enqueue(Note(text="x"), idempotency_key="k-1")
    assert first == second == third
    assert app.backend.stats().waiting == 1


def test_more_attempts_than_the_redrive_policy_allows_is_warned_about(
        sqs: Any, make_queue: Any, caplog: pytest.LogCaptureFixture) -> None:
    pair = make_queue(max_receive_count=2)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))

    @app.job(retry=cq.Retry(attempts=5))
    def note(payload: Note) -> None: ...

    with caplog.at_level("WARNING", logger="cloudqueue.aws"):
        note.enqueue_many([Note(text="a"), Note(text="b")])
    [warning] = [r.getMessage() for r in caplog.records if r.name == "cloudqueue.aws"]
    assert "5 attempts" in warning and "after 2 receives" in warning


def test_idempotency_keys_sqs_cannot_take_become_a_hash() -> None:
    from cloudqueue_aws._wire import dedup_id

    assert dedup_id("order-42/receipt", "body") == "order-42/receipt"
    spaced = dedup_id("order 42 receipt", "body")
    too_long = dedup_id("k" * 129, "body")
    assert len(spaced) == len(too_long) == 64 and spaced != too_long
    assert dedup_id(None, "body a") != dedup_id(None, "body b")


def test_a_settle_after_the_visibility_ran_out_deletes_nothing_another_consumer_holds(
        sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="stale")
    first = SQSBackend(pair.url, client=sqs, visibility_timeout=timedelta(seconds=1))
    second = SQSBackend(pair.url, client=sqs, visibility_timeout=timedelta(seconds=30))
    first.send([cq.OutgoingMessage(body=b'{"n":1}', job_id="j1", job_type="t")])
    [mine] = first.receive(max_messages=1, wait=timedelta(seconds=1))
    assert mine.visibility == timedelta(seconds=1) and mine.lease_until is not None
    import time

    time.sleep(1.5)  # the job outlived its visibility, and nothing extended it...
    [theirs] = second.receive(max_messages=1, wait=timedelta(seconds=2))  # ...so someone else has it
    for settle in (lambda: first.ack(mine), lambda: first.retry(mine, timedelta(0)),
                   lambda: first.dead_letter(mine, cq.Reason(cq.ReasonKind.PERMANENT, "no"))):
        with pytest.raises(cq.StaleDelivery, match="visibility ran out"):
            settle()
    counts = sqs.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"])["Attributes"]
    assert int(counts["ApproximateNumberOfMessagesNotVisible"]) == 1  # still the other consumer's
    assert first.dead_letters() == []
    second.ack(theirs)


def test_receive_reports_the_visibility_in_force(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="vis", visibility_timeout=timedelta(seconds=7))
    backend = SQSBackend(pair.url, client=sqs)
    backend.send([cq.OutgoingMessage(body=b'{"n":1}', job_id=f"j{n}", job_type="t") for n in range(2)])
    [queue_setting] = backend.receive(max_messages=1, wait=timedelta(seconds=1))
    [asked] = backend.receive(max_messages=1, wait=timedelta(seconds=1), visibility=timedelta(seconds=3))
    assert (queue_setting.visibility, asked.visibility) == (timedelta(seconds=7), timedelta(seconds=3))
