"""enqueue_many: chunks, several at once, and an exact account when not all reached the queue."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import enqueued_jobs

from .models import Receipt


class ChunkedMemory(MemoryBackend):
    """A memory queue that takes ten messages a call, and fails the calls told to.

    ``refuse[job_id]`` raises that error before the call whose first message is ``job_id``
    stores anything; ``lose_answer[job_id]`` stores the messages, then raises (an answer
    lost on the way back). ``refuse_entry`` names single messages the call refuses while
    it stores the rest, as SQS does for a refused entry of a batch.
    """

    def __init__(self, *, concurrency: int = 1, barrier: threading.Barrier | None = None,
                 fifo: bool = False) -> None:
        super().__init__(fifo=fifo)
        self.send_concurrency = concurrency
        self.barrier = barrier
        self.refuse: dict[str, Exception] = {}
        self.lose_answer: dict[str, Exception] = {}
        self.refuse_entry: set[str] = set()
        self.threads: set[str] = set()
        self.at_once = 0
        self.most_at_once = 0
        self._count = threading.Lock()

    @property
    def capabilities(self) -> cq.Capabilities:
        return dataclasses.replace(super().capabilities, max_batch=10)

    def send(self, messages: Sequence[cq.OutgoingMessage]) -> list[str]:
        with self._count:
            self.threads.add(threading.current_thread().name)
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            if self.barrier is not None:
                self.barrier.wait()  # returns only when two sends are under way at once
            first = messages[0].job_id
            if first in self.refuse:
                raise self.refuse[first]
            keep = [out for out in messages if out.job_id not in self.refuse_entry]
            ids = super().send(keep)
            if first in self.lose_answer:
                raise self.lose_answer[first]
            refused = [out.job_id for out in messages if out.job_id in self.refuse_entry]
            if refused:
                raise cq.EnqueueError(
                    sent=ids, not_sent=refused, job_ids=[out.job_id for out in messages],
                    errors={job_id: cq.BackendError("InvalidParameterValue: refused") for job_id in refused})
            return ids
        finally:
            with self._count:
                self.at_once -= 1


@pytest.fixture
def backend() -> Iterator[ChunkedMemory]:
    queue = ChunkedMemory()
    yield queue
    queue.close()


@pytest.fixture
def app(backend: ChunkedMemory) -> Iterator[cq.App]:
    application = cq.App("test", backend=backend)
    yield application
    application.close()


def receipts(app: cq.App, count: int, *, ordering_key: str | None = None,
             ) -> tuple[cq.Job[Any, Any], list[cq.OutgoingMessage]]:
    """The ``charge`` job (registered on first use) and ``count`` of its messages."""
    job = app.jobs.get("charge")
    if job is None:
        @app.job
        def charge(payload: Receipt) -> None: ...

        job = charge
    return job, [job.message(Receipt(to=f"u{n}", order_id=str(n)), ordering_key=ordering_key)
                 for n in range(count)]


def in_queue(backend: MemoryBackend) -> Counter[str]:
    return Counter(job.job_id for job in enqueued_jobs(backend))


def test_a_chunk_that_fails_leaves_an_error_saying_which_jobs_reached_the_queue(
        app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 200)
    ids = [out.job_id for out in messages]
    backend.refuse[ids[20]] = cq.PermissionDenied("no sqs:SendMessage")  # the third chunk
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    error = caught.value
    assert error.sent == ids[:20]
    assert error.not_sent == ids[20:]
    assert error.job_ids == ids
    assert error.unknown == []
    assert set(in_queue(backend)) == set(error.sent)
    assert all(isinstance(error.errors[i], cq.PermissionDenied) for i in ids[20:30])
    assert all(str(error.errors[i]).startswith("not sent: sending stopped") for i in ids[30:])
    assert isinstance(error.__cause__, cq.PermissionDenied)
    assert isinstance(error, cq.BackendError)
    text = str(error)
    assert "20 of 200 jobs reached the queue and 180 did not" in text
    assert "again is safe" in text and "idempotency keys" in text


def test_a_lost_answer_is_unknown_never_counted_as_sent_or_not(app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 50)
    ids = [out.job_id for out in messages]
    backend.lose_answer[ids[10]] = cq.BackendUnavailable("connection reset by peer")
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    error = caught.value
    assert error.sent == ids[:10]
    assert error.unknown == ids[10:20]
    assert error.not_sent == ids[10:]
    assert all(str(error.errors[i]).startswith("unknown: may have been sent") for i in ids[10:20])
    assert isinstance(error.errors[ids[10]], cq.BackendUnavailable)
    assert set(in_queue(backend)) == set(ids[:20])  # the lost answer's chunk did arrive
    assert "10 of them are unknown: may have been sent" in str(error)


def test_any_error_that_is_not_the_libraries_leaves_the_outcome_unknown(
        app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 20)
    backend.refuse[messages[10].job_id] = RuntimeError("socket exploded")
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    assert caught.value.unknown == [out.job_id for out in messages[10:]]
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_sending_the_not_sent_messages_again_queues_each_job_exactly_once(
        app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 200)
    backend.refuse[messages[50].job_id] = cq.BackendUnavailable("endpoint went away")
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    backend.refuse.clear()
    again = charge.enqueue_many(caught.value.not_sent_messages)
    assert again == caught.value.not_sent
    counts = in_queue(backend)
    assert set(counts) == {out.job_id for out in messages}
    assert set(counts.values()) == {1}


def test_a_refused_entry_is_reported_and_the_other_chunks_still_go(app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 200)
    ids = [out.job_id for out in messages]
    backend.refuse_entry.add(ids[23])
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    error = caught.value
    assert error.not_sent == [ids[23]]
    assert error.sent == ids[:23] + ids[24:]
    assert "InvalidParameterValue" in str(error.errors[ids[23]])
    assert set(in_queue(backend)) == set(error.sent)
    assert isinstance(error.__cause__, cq.EnqueueError)


def test_chunks_go_out_at_the_same_time_and_ids_keep_the_input_order() -> None:
    backend = ChunkedMemory(concurrency=8, barrier=threading.Barrier(2, timeout=10))
    app = cq.App("test", backend=backend)
    charge, messages = receipts(app, 20)
    ids = charge.enqueue_many(messages)  # two chunks: each waits for the other to start
    assert ids == [out.job_id for out in messages]
    assert backend.most_at_once == 2
    assert set(in_queue(backend)) == set(ids)
    app.close()


def test_at_most_send_concurrency_chunks_are_under_way_at_once() -> None:
    backend = ChunkedMemory(concurrency=3)
    app = cq.App("test", backend=backend)
    charge, messages = receipts(app, 200)
    assert charge.enqueue_many(messages) == [out.job_id for out in messages]
    assert 1 <= backend.most_at_once <= 3
    app.close()


def test_messages_with_ordering_keys_go_one_chunk_after_another_and_stop_at_a_failure() -> None:
    backend = ChunkedMemory(concurrency=8, fifo=True)
    app = cq.App("test", backend=backend)
    charge, messages = receipts(app, 40, ordering_key="customer-1")
    ids = [out.job_id for out in messages]
    backend.refuse_entry.add(ids[15])
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many(messages)
    assert backend.most_at_once == 1
    assert backend.threads == {threading.current_thread().name}
    # the group must not skip ahead of the gap: nothing after the refused chunk was sent
    assert caught.value.sent == ids[:15] + ids[16:20]
    assert caught.value.not_sent == [ids[15], *ids[20:]]
    app.close()


def test_a_repeated_idempotency_key_gives_one_id_across_chunks_and_is_sent_once() -> None:
    backend = ChunkedMemory(concurrency=8)
    app = cq.App("test", backend=backend)
    charge, messages = receipts(app, 30)
    twice = charge.message(Receipt(to="k", order_id="k"), idempotency_key="order-k")
    again = charge.message(Receipt(to="k", order_id="k"), idempotency_key="order-k")
    ids = charge.enqueue_many([twice, *messages, again])  # the two land in different chunks
    assert ids[0] == ids[-1] == twice.job_id
    assert len(set(ids)) == 31
    assert in_queue(backend)[twice.job_id] == 1
    app.close()


def test_a_repeated_key_whose_first_send_failed_is_reported_once(app: cq.App, backend: ChunkedMemory) -> None:
    charge, messages = receipts(app, 10)
    keyed = charge.message(Receipt(to="k", order_id="k"), idempotency_key="order-k")
    backend.refuse[keyed.job_id] = cq.Throttled("slow down")
    with pytest.raises(cq.EnqueueError) as caught:
        charge.enqueue_many([*messages, keyed, keyed])
    assert caught.value.not_sent == [keyed.job_id]
    assert caught.value.job_ids[-2:] == [keyed.job_id, keyed.job_id]
    assert caught.value.not_sent_messages == [keyed]


class Down(MemoryBackend):
    """A memory queue whose endpoint is gone."""

    def send(self, messages: Sequence[cq.OutgoingMessage]) -> list[str]:
        raise cq.BackendUnavailable("connection refused")


def test_a_single_enqueue_raises_the_backends_own_error() -> None:
    app = cq.App("down", backend=Down())

    @app.job
    def ping(payload: Receipt) -> None: ...

    with pytest.raises(cq.BackendUnavailable) as plain:
        ping.enqueue(Receipt(to="a", order_id="1"))
    assert not isinstance(plain.value, cq.EnqueueError)
    with pytest.raises(cq.EnqueueError) as many:
        ping.enqueue_many([Receipt(to="a", order_id="1"), Receipt(to="b", order_id="2")])
    assert many.value.sent == [] and len(many.value.unknown) == 2
    app.close()


class Recording(MemoryBackend):
    """The memory backend, noting the thread each send runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def send(self, messages: Sequence[cq.OutgoingMessage]) -> list[str]:
        self.threads.append(threading.current_thread().name)
        return super().send(messages)


def test_the_memory_backend_sends_in_the_calling_thread() -> None:
    backend = Recording()
    app = cq.App("test", backend=backend)

    @app.job
    def charge(payload: Receipt) -> None: ...

    charge.enqueue_many([Receipt(to=f"u{n}", order_id=str(n)) for n in range(200)])
    assert backend.threads == [threading.current_thread().name]
    assert len(enqueued_jobs(backend)) == 200
    app.close()


def test_nothing_to_send_sends_nothing(app: cq.App, backend: ChunkedMemory) -> None:
    charge, _ = receipts(app, 0)
    assert charge.enqueue_many([]) == []
    assert backend.threads == set()
