"""What a new user trips over in the core, each pinned: drain on the real clock, delays a
backend cannot carry, idempotency keys on the memory backend."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

import cloudqueue as cq
from cloudqueue.backends.base import Capabilities
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.clock import SystemClock
from cloudqueue.testing import FakeClock

from .models import Receipt


class SkippingSystemClock(SystemClock):
    """The real clock's type (so cloudqueue treats it as real), whose sleep moves an offset
    instead of blocking: the test sees what drain would sleep without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), timezone.utc)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds


def test_drain_following_a_long_delay_on_the_real_clock_warns_what_it_waits_for(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = SkippingSystemClock()
    app = cq.App("signup", backend=MemoryBackend(clock=clock))

    @app.job
    def welcome(payload: Receipt) -> None: ...

    welcome.enqueue(Receipt(to="a@b.c", order_id="1"), delay=timedelta(hours=6))
    with caplog.at_level(logging.WARNING, logger="cloudqueue"):
        assert app.drain(follow_delays=True).succeeded == 1
    [record] = caplog.records
    text = record.getMessage()
    assert text.startswith("drain(follow_delays=True): nothing is due; sleeping 6:00:00 in real time, until ")
    assert "a FakeClock jumps instead" in text
    assert clock.slept and clock.slept[0] > 6 * 3600 - 60


def test_drain_on_a_fake_clock_jumps_without_a_warning(cq_app: cq.App, cq_clock: FakeClock,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    @cq_app.job
    def welcome(payload: Receipt) -> None: ...

    welcome.enqueue(Receipt(to="a@b.c", order_id="1"), delay=timedelta(hours=6))
    with caplog.at_level(logging.WARNING, logger="cloudqueue"):
        assert cq_app.drain(follow_delays=True).succeeded == 1
    assert caplog.records == []


class NoDelayBackend(MemoryBackend):
    """A memory queue that reports what a FIFO SQS queue does: no per-message delay."""

    scheme = "sqs"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(max_delay=timedelta(0), delay_hops=False, fifo=True)


def test_a_delay_on_a_queue_without_per_message_delays_says_so_and_what_to_do() -> None:
    app = cq.App("signup", backend=NoDelayBackend(clock=FakeClock()))

    @app.job
    def welcome(payload: Receipt) -> None: ...

    with pytest.raises(cq.UnsupportedFeature) as info:
        welcome.enqueue(Receipt(to="a@b.c", order_id="1"), delay=timedelta(minutes=5))
    text = str(info.value)
    assert text.startswith("job 'welcome': delay/at asks for 0:05:00, but a FIFO sqs queue has no "
                           "per-message delay; enqueue without delay= and at=")
    assert "a standard SQS queue delays up to 15 minutes" in text
    assert "(0:00:00)" not in text
    welcome.enqueue(Receipt(to="a@b.c", order_id="1"))  # no delay: fine
    assert app.drain().succeeded == 1


def test_an_idempotency_key_on_memory_drops_a_repeat_within_the_dedup_window(
        cq_app: cq.App, cq_backend: MemoryBackend, cq_clock: FakeClock) -> None:
    runs: list[str] = []

    @cq_app.job
    def welcome(payload: Receipt) -> None:
        runs.append(payload.order_id)

    first = welcome.enqueue(Receipt(to="a", order_id="1"), idempotency_key="welcome-a")
    assert welcome.enqueue(Receipt(to="a", order_id="2"), idempotency_key="welcome-a") == first
    assert cq_app.drain().succeeded == 1 and runs == ["1"]
    cq_clock.advance(timedelta(minutes=5, seconds=1))  # dedup_window (300 s) has passed
    assert welcome.enqueue(Receipt(to="a", order_id="3"), idempotency_key="welcome-a") == first
    assert cq_app.drain().succeeded == 1 and runs == ["1", "3"]
