"""The dispatcher: every delivery becomes ack, retry after backoff, hop or dead letter."""

from __future__ import annotations

from datetime import timedelta

import pytest

import cloudqueue as cq
from cloudqueue.backends.base import Capabilities, Delivery
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.dispatch import Outcome, Task
from cloudqueue.testing import FakeClock

from .models import Receipt

S = timedelta(seconds=1)


def test_a_whole_backoff_schedule_runs_in_microseconds_on_a_fake_clock(
        cq_app: cq.App, cq_backend: MemoryBackend, cq_clock: FakeClock) -> None:
    start = cq_clock.now()
    runs: list[tuple[int, timedelta]] = []

    @cq_app.job(retry=cq.Retry(attempts=5, backoff=cq.Backoff.exponential(
        initial=timedelta(minutes=1), maximum=timedelta(minutes=5), jitter=False)))
    def flaky(payload: Receipt, ctx: cq.JobContext) -> None:
        runs.append((ctx.attempt, cq_clock.now() - start))
        raise ConnectionError("still down")

    flaky.enqueue(Receipt(to="a", order_id="1"))
    report = cq_app.drain(follow_delays=True)
    minute = timedelta(minutes=1)
    assert runs == [(1, 0 * minute), (2, 1 * minute), (3, 3 * minute), (4, 7 * minute), (5, 12 * minute)]
    assert (report.retried, report.dead_lettered) == (4, 1)
    [letter] = cq_backend.dead_letters()
    assert letter.reason == "exhausted: attempt 5 of 5 failed: ConnectionError: still down"
    assert letter.attempts == 5


def test_drain_without_follow_delays_stops_at_what_is_not_due(cq_app: cq.App, cq_clock: FakeClock) -> None:
    runs: list[int] = []

    @cq_app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(10 * S)))
    def flaky(payload: Receipt, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")

    flaky.enqueue(Receipt(to="a", order_id="1"))
    assert cq_app.drain().retried == 1
    assert cq_app.drain().processed == 0
    cq_clock.advance(10 * S)
    assert cq_app.drain().succeeded == 1
    assert runs == [1, 2]


def test_fail_fast_reraises_the_jobs_own_exception(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    class CardDeclined(Exception):
        pass

    @cq_app.job
    def charge(payload: Receipt) -> None:
        raise CardDeclined(payload.order_id)

    charge.enqueue_many([Receipt(to="a", order_id="1"), Receipt(to="b", order_id="2")])
    with pytest.raises(CardDeclined, match="1"):
        cq_app.drain(fail_fast=True)
    stats = cq_backend.stats()
    assert (stats.delayed, stats.waiting, stats.in_flight) == (1, 1, 0)  # retry scheduled, rest released


def test_fail_fast_on_poison_raises_a_cloudqueue_error(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def charge(payload: Receipt) -> None: ...

    cq_backend.send([cq.OutgoingMessage(body=b"{}", job_id="x", job_type="charge")])
    with pytest.raises(cq.CloudQueueError, match="poison: not a cloudqueue envelope"):
        cq_app.drain(fail_fast=True)


def test_payload_that_fails_its_model_on_receipt_is_poison_naming_job_and_field(
        cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def charge(payload: Receipt) -> None: ...

    body = charge.message(Receipt(to="a", order_id="1")).body.replace(b'"amount":1', b'"amount":-5')
    cq_backend.send([cq.OutgoingMessage(body=body, job_id="x", job_type="charge")])
    report = cq_app.drain()
    assert report.dead_lettered == 1 and report.results[0].poison
    [letter] = cq_backend.dead_letters()
    assert "job 'charge'" in letter.reason and "field 'amount'" in letter.reason
    assert letter.body == body  # the original message, intact


def test_retry_later_on_the_last_attempt_goes_to_dead_letters(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    @cq_app.job(retry=cq.Retry(attempts=1))
    def poll(payload: Receipt) -> None:
        raise cq.RetryLater(timedelta(minutes=5), "not ready")

    poll.enqueue(Receipt(to="a", order_id="1"))
    assert cq_app.drain().dead_lettered == 1
    assert "exhausted" in cq_backend.dead_letters()[0].reason


class HoppingMemory(MemoryBackend):
    """A memory queue that, like SQS, holds a message back for at most 15 minutes."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(max_delay=timedelta(minutes=15), delay_hops=True, fifo=False,
                            dedup=True, visibility=True)


def test_a_delay_longer_than_the_backend_allows_hops_until_due(cq_clock: FakeClock) -> None:
    backend = HoppingMemory(clock=cq_clock)
    app = cq.App("shop", backend=backend)
    ran_at: list[timedelta] = []
    start = cq_clock.now()

    @app.job
    def remind(payload: Receipt, ctx: cq.JobContext) -> None:
        ran_at.append(cq_clock.now() - start)
        assert ctx.attempt == 1  # hops are not attempts

    remind.enqueue(Receipt(to="a", order_id="1"), delay=timedelta(days=3))
    [pending] = backend.pending()
    assert pending.due_at - start == timedelta(minutes=15)
    report = app.drain(follow_delays=True)
    assert ran_at == [timedelta(days=3)]
    assert report.hopped == 3 * 24 * 4 - 1 and report.succeeded == 1


class ShortDelays(MemoryBackend):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(max_delay=timedelta(minutes=15), delay_hops=False)


def test_a_delay_the_backend_cannot_honour_is_refused_not_dropped() -> None:
    app = cq.App("shop", backend=ShortDelays())

    @app.job
    def remind(payload: Receipt) -> None: ...

    with pytest.raises(cq.UnsupportedFeature, match="longer than the memory backend allows"):
        remind.enqueue(Receipt(to="a", order_id="1"), delay=timedelta(hours=1))


def test_context_deadline_and_remaining_come_from_the_delivery(cq_app: cq.App, cq_clock: FakeClock) -> None:
    seen: list[timedelta | None] = []

    @cq_app.job
    def work(payload: Receipt, ctx: cq.JobContext) -> None:
        seen.append(ctx.remaining())

    body = work.message(Receipt(to="a", order_id="1")).body
    delivery = Delivery(body=body, attempt=1, message_id="m",
                        deadline=cq_clock.now() + timedelta(seconds=42))
    task = cq_app.dispatcher.prepare(delivery)
    assert isinstance(task, Task)
    assert task.context(cq_clock).deadline == cq_clock.now() + timedelta(seconds=42)
    assert cq_app.dispatcher.run(task).outcome is Outcome.ACK
    assert seen == [timedelta(seconds=42)]


def test_async_jobs_run_from_inside_a_running_event_loop(cq_app: cq.App) -> None:
    import asyncio

    seen: list[str] = []

    @cq_app.job
    async def work(payload: Receipt) -> None:
        await asyncio.sleep(0)
        seen.append(payload.to)

    async def main() -> None:
        work.enqueue(Receipt(to="loop", order_id="1"))
        cq_app.drain()

    asyncio.run(main())
    assert seen == ["loop"]


def test_run_async_runs_sync_jobs_in_a_thread(cq_app: cq.App) -> None:
    import asyncio
    import threading

    threads: list[str] = []

    @cq_app.job
    def work(payload: Receipt) -> None:
        threads.append(threading.current_thread().name)

    body = work.message(Receipt(to="a", order_id="1")).body
    task = cq_app.dispatcher.prepare(Delivery(body=body, attempt=1, message_id="m"))
    assert isinstance(task, Task)
    result = asyncio.run(cq_app.dispatcher.run_async(task))
    assert result.outcome is Outcome.ACK
    assert threads and threads[0] != threading.main_thread().name


def test_envelopes_from_other_producers_run_when_valid(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    done: list[str] = []

    @cq_app.job
    def charge(payload: Receipt, ctx: cq.JobContext) -> None:
        done.append(f"{payload.order_id} {ctx.enqueued_at.isoformat()} {ctx.idempotency_key}")

    @cq_app.job
    def other(payload: int) -> None: ...

    base = ('{"specversion":"1.0","id":"x%d","source":"elsewhere","type":"charge","time":"%s",'
            '"data":{"to":"a","order_id":"%d"},"cqv":1%s}')
    bodies = [
        base % (1, "2030-01-01T01:00:00+01:00", 1, ',"cqkey":"k","otherext":{"a":1}'),
        base % (2, "2030-01-01 00:00:00Z", 2, ""),  # a space instead of T: RFC 3339 allows it
        base % (3, "2029-12-31T23:59:59Z", 3, ',"cqnotbefore":"2029-12-31T00:00:00Z"'),  # due already
    ]
    cq_backend.send([cq.OutgoingMessage(body=b.encode(), job_id=str(n), job_type="charge")
                     for n, b in enumerate(bodies)])
    assert cq_app.drain().succeeded == 3
    assert done == ["1 2030-01-01T00:00:00+00:00 k", "2 2030-01-01T00:00:00+00:00 None",
                    "3 2029-12-31T23:59:59+00:00 None"]


def test_registering_a_job_later_is_seen_by_the_dispatcher(cq_app: cq.App) -> None:
    @cq_app.job
    def first(payload: int) -> None: ...

    first.enqueue(1)
    assert cq_app.drain().succeeded == 1

    @cq_app.job
    def second(payload: int) -> None: ...

    second.enqueue(2)
    assert cq_app.drain().succeeded == 1


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_trace_context_travels_from_job_to_job(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    seen: list[str | None] = []

    @cq_app.job
    def second(payload: int, ctx: cq.JobContext) -> None:
        seen.append(ctx.traceparent)

    @cq_app.job
    def first(payload: int, ctx: cq.JobContext) -> None:
        seen.append(ctx.traceparent)
        second.enqueue(payload + 1)  # carries the running job's trace context

    first.enqueue(1, traceparent=TRACE)
    second.enqueue(9)  # enqueued outside any job: no trace context
    cq_app.drain()
    assert seen == [TRACE, None, TRACE]


def test_a_malformed_traceparent_is_refused(cq_app: cq.App) -> None:
    @cq_app.job
    def work(payload: int) -> None: ...

    with pytest.raises(cq.ConfigurationError, match="not W3C trace context"):
        work.enqueue(1, traceparent="abc")
