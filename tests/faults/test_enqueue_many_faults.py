"""enqueue_many against moto server through a faulty endpoint: the error names exactly the
job ids that reached the queue, and sending the rest again loses and duplicates nothing.

The queue's content is read from moto directly (not through the proxy): every message is
received, its envelope id counted.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from cloudqueue_aws import BatchSendError, SQSBackend
from cloudqueue_aws.backend import delivery_from_message
from pydantic import BaseModel

import cloudqueue as cq
from tests.faults.proxy import FaultProxy

JOBS = 200


class Note(BaseModel):
    text: str


def queued(sqs: Any, url: str) -> Counter[str]:
    """How many times each job id is in the queue now (received and hidden for 10 minutes)."""
    counts: Counter[str] = Counter()
    for _ in range(500):  # bound: far more receives than 10-message pages of these queues
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600,
                                       MessageAttributeNames=["All"]).get("Messages") or []
        if not messages:
            return counts
        for message in messages:
            counts[json.loads(delivery_from_message(message).body)["id"]] += 1
    raise AssertionError(f"the queue {url} did not run dry after 500 receives")


def app_on(sqs_via_proxy: Any, url: str) -> tuple[cq.App, cq.Job[Any, Any]]:
    """An app on the queue through the proxy, its queue attributes read before any fault."""
    backend = SQSBackend(url, client=sqs_via_proxy)
    app = cq.App("shop", backend=backend)

    @app.job
    def note(payload: Note) -> None: ...

    backend.capabilities  # noqa: B018 - GetQueueAttributes now, while the endpoint is healthy
    return app, note


def assert_exact_account(error: cq.EnqueueError) -> None:
    """sent and not_sent split the call's job ids, in input order, and say why."""
    sent, missing = set(error.sent), set(error.not_sent)
    assert len(error.job_ids) == JOBS and len(set(error.job_ids)) == JOBS
    assert sent | missing == set(error.job_ids) and not sent & missing
    assert error.sent == [i for i in error.job_ids if i in sent]
    assert error.not_sent == [i for i in error.job_ids if i in missing]
    assert [out.job_id for out in error.not_sent_messages] == error.not_sent
    assert set(error.errors) == missing and set(error.unknown) <= missing
    for job_id in error.not_sent:
        text = str(error.errors[job_id])
        if job_id in error.unknown:
            assert text.startswith("unknown: may have been sent"), text
        else:
            assert "unknown" not in text, text


def tally(enqueued: list[str], counts: Counter[str]) -> dict[str, int]:
    return {"enqueued": len(enqueued), "in queue": sum(counts.values()),
            "lost": len(set(enqueued) - set(counts)),
            "duplicated": sum(n - 1 for n in counts.values() if n > 1)}


def test_an_endpoint_cut_after_five_batches_reports_the_fifty_that_arrived(
        sqs: Any, sqs_via_proxy: Any, fault_proxy: FaultProxy, make_queue: Any) -> None:
    pair = make_queue()
    app, note = app_on(sqs_via_proxy, pair.url)
    fault_proxy.cut_after_requests(5)  # the 6th SendMessageBatch on never reaches moto
    with pytest.raises(cq.EnqueueError) as caught:
        note.enqueue_many([Note(text=str(n)) for n in range(JOBS)])
    error = caught.value
    assert_exact_account(error)
    first = queued(sqs, pair.url)
    assert set(first) == set(error.sent) and set(first.values()) == {1}
    assert len(error.sent) == 50  # five calls of ten went through
    assert error.unknown  # the calls that were cut: their requests went out, no answer came
    assert isinstance(error.__cause__, cq.BackendUnavailable)
    assert "50 of 200 jobs reached the queue and 150 did not" in str(error)

    fault_proxy.pass_traffic()
    assert note.enqueue_many(error.not_sent_messages) == error.not_sent
    counts = first + queued(sqs, pair.url)
    assert tally(error.job_ids, counts) == {"enqueued": JOBS, "in queue": JOBS, "lost": 0, "duplicated": 0}
    app.close()


def test_a_batch_whose_answer_is_lost_is_unknown_and_idempotency_keys_make_the_retry_exact(
        sqs: Any, sqs_via_proxy: Any, fault_proxy: FaultProxy, make_queue: Any) -> None:
    """The 6th request reaches moto and is stored, but its answer never comes back: those ten
    are not counted as sent, they are reported unknown. On a FIFO queue their idempotency
    keys (MessageDeduplicationId) make sending them again harmless."""
    pair = make_queue(fifo=True)
    app, note = app_on(sqs_via_proxy, pair.url)
    messages = [note.message(Note(text=str(n)), idempotency_key=f"note-{n}") for n in range(JOBS)]
    fault_proxy.cut_after_requests(5, deliver_next=True)
    with pytest.raises(cq.EnqueueError) as caught:
        note.enqueue_many(messages)
    error = caught.value
    assert_exact_account(error)
    first = queued(sqs, pair.url)
    assert set(error.sent) <= set(first) and set(first.values()) == {1}
    arrived_unseen = set(first) - set(error.sent)
    assert len(arrived_unseen) == 10 and arrived_unseen <= set(error.unknown)
    assert "may have been sent" in str(error)

    fault_proxy.pass_traffic()
    note.enqueue_many(error.not_sent_messages)
    counts = first + queued(sqs, pair.url)
    assert tally(error.job_ids, counts) == {"enqueued": JOBS, "in queue": JOBS, "lost": 0, "duplicated": 0}
    app.close()


def test_an_entry_refused_in_the_third_batch_is_reported_and_every_other_job_arrives(
        sqs: Any, sqs_via_proxy: Any, fault_proxy: FaultProxy, make_queue: Any) -> None:
    """moto refuses a single entry of a SendMessageBatch for one reason only: a DelaySeconds
    over 900 (per-entry InvalidParameterValue, SenderFault), which the backend never sends
    (it caps delays and hops longer ones). So a botocore hook on the client sets
    DelaySeconds=901 on one entry of the third SendMessageBatch; the refusal, the rest of
    the batch and the queue's content are moto's own."""
    pair = make_queue()
    app, note = app_on(sqs_via_proxy, pair.url)
    calls: list[int] = []
    refused: list[str] = []
    lock = threading.Lock()

    def spoil_one_entry_of_the_third_call(params: dict[str, Any], **_: Any) -> None:
        with lock:
            calls.append(len(params["Entries"]))
            if len(calls) != 3:
                return
        entry = params["Entries"][4]
        entry["DelaySeconds"] = 901
        refused.append(json.loads(entry["MessageBody"])["id"])

    event = "provide-client-params.sqs.SendMessageBatch"
    sqs_via_proxy.meta.events.register(event, spoil_one_entry_of_the_third_call)
    try:
        with pytest.raises(cq.EnqueueError) as caught:
            note.enqueue_many([Note(text=str(n)) for n in range(JOBS)])
    finally:
        sqs_via_proxy.meta.events.unregister(event, spoil_one_entry_of_the_third_call)
    error = caught.value
    assert_exact_account(error)
    assert error.not_sent == refused and error.unknown == []
    assert "InvalidParameterValue" in str(error.errors[refused[0]])
    assert isinstance(error.__cause__, BatchSendError)
    assert error.__cause__.failed[refused[0]][0] == "InvalidParameterValue"
    assert len(calls) == JOBS // 10  # the refusal stopped nothing
    first = queued(sqs, pair.url)
    assert set(first) == set(error.sent) and len(error.sent) == JOBS - 1

    note.enqueue_many(error.not_sent_messages)
    counts = first + queued(sqs, pair.url)
    assert tally(error.job_ids, counts) == {"enqueued": JOBS, "in queue": JOBS, "lost": 0, "duplicated": 0}
    app.close()


def test_an_endpoint_that_drops_every_connection_counts_nothing_as_sent(
        sqs: Any, sqs_via_proxy: Any, fault_proxy: FaultProxy, make_queue: Any) -> None:
    pair = make_queue()
    app, note = app_on(sqs_via_proxy, pair.url)
    fault_proxy.drop_new_connections(close_open=True)
    with pytest.raises(cq.EnqueueError) as caught:
        note.enqueue_many([Note(text=str(n)) for n in range(JOBS)])
    error = caught.value
    assert_exact_account(error)
    assert error.sent == [] and queued(sqs, pair.url) == Counter()
    assert 0 < len(error.unknown) < JOBS  # the calls under way; after them none was started
    app.close()


def test_a_slow_endpoint_still_gets_every_job_once_and_ids_keep_their_order(
        sqs: Any, sqs_via_proxy: Any, fault_proxy: FaultProxy, make_queue: Any) -> None:
    pair = make_queue()
    app, note = app_on(sqs_via_proxy, pair.url)
    fault_proxy.delay(timedelta(milliseconds=50))
    ids = note.enqueue_many([Note(text=str(n)) for n in range(JOBS)])
    texts: dict[str, str] = {}
    for _ in range(500):
        got = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=600).get("Messages") or []
        if not got:
            break
        for message in got:
            envelope = json.loads(message["Body"])
            texts[envelope["id"]] = envelope["data"]["text"]
    assert [texts[job_id] for job_id in ids] == [str(n) for n in range(JOBS)]
    assert fault_proxy.requests >= JOBS // 10
    app.close()
