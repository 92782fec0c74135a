"""The worker: concurrency, async jobs, heartbeats, and a graceful stop that loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import timedelta

import pytest

import cloudqueue as cq
from cloudqueue.backends.base import Capabilities, Delivery
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.worker import Worker, WorkerStats

from .models import Receipt

FAST = {"poll_wait": timedelta(milliseconds=100), "handle_signals": False}


def _receipts(n: int) -> list[Receipt]:
    return [Receipt(to=f"c{i}", order_id=str(i)) for i in range(n)]


def test_sync_jobs_run_concurrently_on_the_pool() -> None:
    app = cq.App("w", backend=MemoryBackend())
    barrier = threading.Barrier(4, timeout=10)
    threads: set[str] = set()

    @app.job(retry=cq.Retry(attempts=1))
    def meet(payload: Receipt) -> None:
        threads.add(threading.current_thread().name)
        barrier.wait()  # only passes when four jobs run at the same time

    meet.enqueue_many(_receipts(4))
    stats = app.worker(concurrency=4, **FAST).run(until_empty=True)
    assert (stats.succeeded, stats.dead_lettered) == (4, 0)
    assert len(threads) == 4
    app.close()


def test_async_jobs_share_one_event_loop() -> None:
    app = cq.App("w", backend=MemoryBackend())
    loops: set[int] = set()
    done: list[str] = []

    @app.job
    async def fetch(payload: Receipt) -> None:
        loops.add(id(asyncio.get_running_loop()))
        await asyncio.sleep(0.01)
        done.append(payload.to)

    fetch.enqueue_many(_receipts(5))
    stats = app.worker(concurrency=5, **FAST).run(until_empty=True)
    assert stats.succeeded == 5 and sorted(done) == [f"c{i}" for i in range(5)]
    assert len(loops) == 1


def test_failures_are_retried_and_dead_lettered_by_the_worker() -> None:
    backend = MemoryBackend()
    app = cq.App("w", backend=backend)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(milliseconds=10))))
    def broken(payload: Receipt) -> None:
        raise RuntimeError("nope")

    broken.enqueue(Receipt(to="a", order_id="1"))
    stats = app.worker(concurrency=2, **FAST).run(until_empty=True)
    assert (stats.retried, stats.dead_lettered) == (1, 1)
    assert "exhausted: attempt 2 of 2" in backend.dead_letters()[0].reason


def test_sigterm_stops_receiving_and_finishes_started_jobs_losing_nothing() -> None:
    backend = MemoryBackend()
    app = cq.App("w", backend=backend)
    started: list[str] = []
    finished: list[str] = []
    lock = threading.Lock()

    @app.job
    def slow(payload: Receipt) -> None:
        with lock:
            first = not started
            started.append(payload.to)
        if first:
            os.kill(os.getpid(), signal.SIGTERM)  # the platform asks the container to stop
        time.sleep(0.3)
        finished.append(payload.to)

    slow.enqueue_many(_receipts(6))
    previous = signal.getsignal(signal.SIGTERM)
    stats = Worker(app, concurrency=2, poll_wait=timedelta(milliseconds=100)).run()
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    assert sorted(started) == sorted(finished) and 1 <= len(finished) <= 2
    assert stats.succeeded == len(finished)
    left = backend.receive(max_messages=10)
    assert len(left) == 6 - len(finished)
    assert all(d.attempt == 1 for d in left)  # nothing counted against the rest


class StopDuringPoll(MemoryBackend):
    """A queue whose long poll returns just as the worker is told to stop."""

    worker: Worker | None = None

    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        got = super().receive(max_messages, wait, visibility)
        if got and self.worker is not None:
            self.worker.stop()
        return got


def test_messages_received_after_stop_are_given_back_at_once_uncounted() -> None:
    backend = StopDuringPoll()
    app = cq.App("w", backend=backend)
    ran: list[str] = []

    @app.job
    def work(payload: Receipt) -> None:
        ran.append(payload.to)

    work.enqueue_many(_receipts(3))
    worker = app.worker(concurrency=1, prefetch=3, **FAST)
    backend.worker = worker
    stats = worker.run()
    assert ran == [] and stats.released == 3
    backend.worker = None
    assert [d.attempt for d in backend.receive()] == [1, 1, 1]


def test_the_heartbeat_keeps_a_long_job_from_being_delivered_twice() -> None:
    backend = MemoryBackend(visibility_timeout=timedelta(milliseconds=500))
    app = cq.App("w", backend=backend)
    attempts: list[int] = []

    @app.job
    def long_job(payload: Receipt, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        time.sleep(1.5)  # three visibility timeouts

    long_job.enqueue(Receipt(to="a", order_id="1"))
    stats = app.worker(concurrency=2, visibility_timeout=timedelta(milliseconds=500),
                       heartbeat=timedelta(milliseconds=100), **FAST).run(until_empty=True)
    assert attempts == [1] and stats.succeeded == 1


class PushOnly(MemoryBackend):
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(pull=False, push=True)


def test_a_worker_refuses_a_push_only_backend() -> None:
    app = cq.App("w", backend=PushOnly())
    with pytest.raises(cq.ConfigurationError, match="push-only"):
        app.worker(**FAST).run()


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(cq.ConfigurationError, match="concurrency"):
        cq.App("w").worker(concurrency=0)


def test_until_empty_waits_for_pending_retries() -> None:
    app = cq.App("w", backend=MemoryBackend())
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(milliseconds=300))))
    def flaky(payload: Receipt, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("once")

    flaky.enqueue(Receipt(to="a", order_id="1"))
    stats = app.worker(concurrency=1, **FAST).run(until_empty=True)  # polls 100 ms: shorter than the backoff
    assert attempts == [1, 2] and (stats.retried, stats.succeeded) == (1, 1)


def test_until_empty_returns_without_waiting_out_the_other_consumers_long_polls() -> None:
    """Consumers idle in a long receive are woken when the queue is found empty: ``run``
    returns without their poll running out (here a minute, far beyond the bound)."""
    app = cq.App("w", backend=MemoryBackend())
    ran: list[str] = []

    @app.job
    def note(payload: Receipt) -> None:
        ran.append(payload.order_id)

    note.enqueue_many(_receipts(3))
    worker = app.worker(concurrency=4, poll_wait=timedelta(seconds=60), handle_signals=False)
    done: list[WorkerStats] = []
    runner = threading.Thread(target=lambda: done.append(worker.run(until_empty=True)))
    runner.start()
    runner.join(timeout=30)
    alive = runner.is_alive()
    if alive:  # free the test's thread before failing
        worker.stop()
        runner.join(timeout=90)
    assert not alive, "run(until_empty=True) waited out an idle consumer's long poll"
    assert done[0].succeeded == 3 and sorted(ran) == ["0", "1", "2"]
