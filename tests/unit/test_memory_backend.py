"""The memory backend behaves like a queue, not like a function call."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

import cloudqueue as cq
from cloudqueue.backends import from_url
from cloudqueue.backends.base import Delivery, OutgoingMessage
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock

S = timedelta(seconds=1)


def _msg(n: int = 1, **options: object) -> OutgoingMessage:
    return OutgoingMessage(body=f'{{"n":{n}}}'.encode(), job_id=f"j{n}", job_type="t", **options)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_it_stores_bytes_only(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    with pytest.raises(TypeError, match="bytes only"):
        backend.send([OutgoingMessage(body="text", job_id="j", job_type="t")])  # type: ignore[arg-type]


def test_a_received_message_is_hidden_until_its_visibility_timeout_then_counted_again(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, visibility_timeout=30 * S)
    backend.send([_msg()])
    [first] = backend.receive()
    assert first.attempt == 1 and backend.receive() == []
    assert backend.stats().in_flight == 1
    clock.advance(29 * S)
    assert backend.receive() == []
    clock.advance(1 * S)
    [again] = backend.receive()
    assert again.attempt == 2 and again.body == first.body
    with pytest.raises(cq.StaleDelivery):  # a stale receipt settles nothing, and says so
        backend.ack(first)
    assert backend.stats().in_flight == 1
    backend.ack(again)
    assert backend.stats() == cq.QueueStats(waiting=0, in_flight=0, delayed=0, dead_lettered=0,
                                            oldest_age=None, completed=1, failed=0)


def test_extend_visibility_keeps_a_long_job_hidden(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, visibility_timeout=10 * S)
    backend.send([_msg()])
    [delivery] = backend.receive()
    clock.advance(8 * S)
    backend.extend_visibility(delivery, 10 * S)
    clock.advance(8 * S)
    assert backend.receive() == []
    clock.advance(3 * S)
    assert [d.attempt for d in backend.receive()] == [2]


def test_release_gives_a_message_back_without_counting_a_receive(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.send([_msg()])
    [delivery] = backend.receive()
    backend.release(delivery)
    assert [d.attempt for d in backend.receive()] == [1]


def test_a_message_nobody_settles_goes_to_dead_letters_after_its_attempts(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, visibility_timeout=5 * S)
    backend.send([_msg(max_attempts=2)])
    for _ in range(2):
        assert len(backend.receive()) == 1
        clock.advance(5 * S)
    assert backend.receive() == []
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.UNSETTLED and letter.attempts == 2


def test_max_receives_option_overrides_the_jobs_attempts(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, visibility_timeout=5 * S, max_receives=1)
    backend.send([_msg(max_attempts=9)])
    assert len(backend.receive()) == 1
    clock.advance(5 * S)
    assert backend.receive() == [] and len(backend.dead_letters()) == 1


def test_delays_hold_messages_back_in_due_order(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.send([_msg(1, delay=20 * S), _msg(2, delay=10 * S), _msg(3)])
    assert [d.body for d in backend.receive()] == [b'{"n":3}']
    assert backend.stats().delayed == 2
    assert backend.next_due() == clock.now() + 10 * S
    clock.advance(25 * S)
    assert [d.body for d in backend.receive()] == [b'{"n":2}', b'{"n":1}']


def test_fifo_delivers_one_message_per_group_at_a_time_in_order(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock, fifo=True)
    backend.send([_msg(1, ordering_key="a"), _msg(2, ordering_key="a"), _msg(3, ordering_key="b"),
                  _msg(4)])
    first = backend.receive(max_messages=10)
    assert [d.body for d in first] == [b'{"n":1}', b'{"n":3}', b'{"n":4}']
    assert backend.receive() == []  # group a is busy until message 1 is settled
    backend.retry(first[0], 5 * S)
    assert backend.receive() == []  # and stays blocked while message 1 waits for its retry
    clock.advance(5 * S)
    [retried] = backend.receive()
    assert retried.body == b'{"n":1}' and retried.attempt == 2
    backend.ack(retried)
    assert [d.body for d in backend.receive()] == [b'{"n":2}']


def test_dead_letters_can_be_listed_redriven_by_id_and_purged(clock: FakeClock) -> None:
    backend = MemoryBackend(clock=clock)
    backend.send([_msg(1), _msg(2), _msg(3)])
    for delivery in backend.receive():
        backend.dead_letter(delivery, f"because {delivery.body.decode()}")
    letters = backend.dead_letters()
    assert [lt.reason for lt in letters] == ['because {"n":1}', 'because {"n":2}', 'because {"n":3}']
    assert backend.dead_letters(limit=1) == letters[:1]
    assert backend.redrive([letters[1].message_id]) == 1
    [back] = backend.receive()
    assert back.body == b'{"n":2}' and back.attempt == 1
    with pytest.raises(cq.QueueNotFound, match="no dead letter with id nope"):
        backend.redrive(["nope"])
    assert backend.purge_dead_letters() == 2 and backend.dead_letters() == []


def test_receive_waits_for_a_message_sent_meanwhile() -> None:
    import threading

    backend = MemoryBackend()
    timer = threading.Timer(0.05, lambda: backend.send([_msg()]))
    timer.start()
    try:
        assert len(backend.receive(wait=timedelta(seconds=5))) == 1
    finally:
        timer.join()


def test_named_queues_are_shared_in_the_process_and_private_ones_are_not() -> None:
    assert from_url("memory://shared-q") is from_url("memory://shared-q")
    assert from_url("memory://") is not from_url("memory://")


@pytest.mark.parametrize(("url", "message"), [
    ("memory://?visiblity_timeout=3", "did you mean 'visibility_timeout'"),
    ("memory://?fifo=maybe", "not a boolean"),
    ("memory://?dedup_window=soon", "not a number"),
    ("memory://?max_receives=-1", "must not be negative"),
])
def test_bad_memory_url_options_are_explained(url: str, message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        from_url(url)


def test_a_closed_private_backend_refuses_work() -> None:
    backend = MemoryBackend()
    backend.close()
    with pytest.raises(cq.ConfigurationError, match="closed"):
        backend.send([_msg()])


def test_wake_makes_a_waiting_receive_return_empty_at_once() -> None:
    backend = MemoryBackend()
    got: list[list[Delivery]] = []
    waiting = threading.Thread(target=lambda: got.append(backend.receive(wait=timedelta(seconds=60))))
    waiting.start()
    deadline = time.monotonic() + 10
    while not backend._waiting and time.monotonic() < deadline:  # it is inside its wait
        time.sleep(0.01)
    backend.wake()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and got == [[]]
    backend.send([OutgoingMessage(b"{}", "j", "t")])
    assert len(backend.receive()) == 1  # a later receive works as before
