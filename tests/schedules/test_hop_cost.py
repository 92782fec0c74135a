"""The cost of a long delay by hops, counted through the real dispatcher: a queue that delays
at most 15 minutes (as SQS does), a fake clock, and one job delayed by a day."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import Capabilities, Delivery
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock


class Reminder(BaseModel):
    to: str


class SqsLikeDelays(MemoryBackend):
    """The memory queue with SQS's delay rule: at most 15 minutes, longer ones hop; counts
    what hopping costs in receives and sends."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._caps = dataclasses.replace(super().capabilities, max_delay=timedelta(minutes=15),
                                         delay_hops=True)
        self.receives = 0
        self.hops = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        got = super().receive(max_messages, wait, visibility)
        self.receives += len(got)
        return got

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        self.hops += 1
        assert delay <= timedelta(minutes=15)
        super().hop(delivery, delay)


def test_a_day_long_delay_hops_95_times_before_it_runs() -> None:
    clock = FakeClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
    backend = SqsLikeDelays(clock=clock)
    app = cq.App("shop", backend=backend)
    ran: list[datetime] = []

    @app.job
    def remind(payload: Reminder) -> None:
        ran.append(clock.now())

    remind.enqueue({"to": "a@b.c"}, delay=timedelta(days=1))
    report = app.drain(follow_delays=True)
    assert ran == [datetime(2030, 1, 2, tzinfo=timezone.utc)]
    # 96 receives: 95 early ones that hop (one receive, send and delete each on SQS), and
    # the one that runs the job: cloudqueue_aws.scheduler.hop_cost says the same
    assert (backend.hops, backend.receives, report.hopped) == (95, 96, 95)
    from cloudqueue_aws.scheduler import hop_cost

    assert hop_cost(timedelta(days=1)).hops == backend.hops
