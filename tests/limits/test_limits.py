"""Rate and concurrency limits: parsing, the token bucket, and the worker deferring held-back
jobs without spending an attempt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.limits import LocalLimits, parse_rate
from cloudqueue.testing import FakeClock

FAST = {"poll_wait": timedelta(milliseconds=50), "handle_signals": False}
WAIT = 20.0  # seconds any one condition may take on a loaded machine


class Sync(BaseModel):
    tenant: str
    n: int = 0


@pytest.mark.parametrize(("text", "parsed"), [
    ("10/s", (10.0, 1.0)), ("100/m", (100.0, 60.0)), ("5/h", (5.0, 3600.0)), (" 2.5 / s ", (2.5, 1.0))])
def test_rates_parse(text: str, parsed: tuple[float, float]) -> None:
    assert parse_rate(text) == parsed


@pytest.mark.parametrize("bad", ["10", "10/d", "0/s", "-1/s", "ten/s", "10/sec"])
def test_a_bad_rate_names_the_job_and_the_forms(bad: str) -> None:
    app = cq.App("t", backend="memory://")
    with pytest.raises(cq.ConfigurationError, match=r"job 'sync': rate_limit .* write \"N/s\", \"N/m\" or \"N/h\""):
        @app.job(rate_limit=bad)
        def sync(payload: Sync) -> None: ...


@pytest.mark.parametrize(("bad", "message"), [
    (0, "concurrency must be an int >= 1"), ("5", "concurrency must be an int >= 1 or a cq.Concurrency"),
    (True, "concurrency must be an int >= 1 or a cq.Concurrency")])
def test_a_bad_concurrency_names_the_job(bad: Any, message: str) -> None:
    app = cq.App("t", backend="memory://")
    with pytest.raises(cq.ConfigurationError, match=f"job 'sync': {message}"):
        @app.job(concurrency=bad)
        def sync(payload: Sync) -> None: ...


def test_the_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    limits = LocalLimits()
    bucket = ("sync", None)
    assert [limits.take_token(bucket, 3, 1.0, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.take_token(bucket, 3, 1.0, 100.0) == pytest.approx(1 / 3)
    assert limits.take_token(bucket, 3, 1.0, 100.0 + 1 / 3) == 0.0  # one token back after 1/3 s
    assert limits.take_token(bucket, 3, 1.0, 100.0 + 1 / 3) > 0


def test_concurrency_places_are_counted_per_key() -> None:
    limits = LocalLimits()
    assert limits.enter(("sync", "a"), 1) and not limits.enter(("sync", "a"), 1)
    assert limits.enter(("sync", "b"), 1)
    limits.leave(("sync", "a"))
    assert limits.enter(("sync", "a"), 1)


class Outcomes(cq.Middleware):
    """Records every settled outcome, and wakes waiters."""

    def __init__(self) -> None:
        self.results: list[cq.Result] = []
        self.changed = threading.Condition()

    def settled(self, result: cq.Result) -> None:
        with self.changed:
            self.results.append(result)
            self.changed.notify_all()

    def count(self, outcome: cq.Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    def wait_for(self, **counts: int) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: all(
                self.count(cq.Outcome[name.upper()]) >= n for name, n in counts.items()), timeout=WAIT)
        assert ok, f"waited for {counts}, saw {[r.outcome.value for r in self.results]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2030, 1, 1, tzinfo=timezone.utc))


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def app(clock: FakeClock, outcomes: Outcomes) -> Iterator[cq.App]:
    app = cq.App("limits", backend=MemoryBackend(clock=clock), middleware=[outcomes])
    yield app
    app.close()


def run_worker(app: cq.App, concurrency: int) -> tuple[cq.worker.Worker, threading.Thread]:  # type: ignore[name-defined]
    worker = app.worker(concurrency=concurrency, **FAST)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def stop(worker: Any, thread: threading.Thread) -> None:
    worker.stop()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_a_rate_limited_job_over_its_rate_is_deferred_without_spending_an_attempt(
        app: cq.App, clock: FakeClock, outcomes: Outcomes) -> None:
    attempts: list[int] = []

    @app.job(rate_limit="1/h", retry=cq.Retry(attempts=1))
    def sync(payload: Sync, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)

    sync.enqueue_many([{"tenant": "a", "n": n} for n in range(3)])
    worker, thread = run_worker(app, concurrency=3)
    try:
        outcomes.wait_for(ack=1, defer=2)
        deferred = [r for r in outcomes.results if r.outcome is cq.Outcome.DEFER]
        assert all(r.delay is not None and r.delay >= timedelta(minutes=59) for r in deferred)
        assert "rate limit 1/h reached for job 'sync'" in str(deferred[0].reason)
        clock.advance(timedelta(hours=1))  # one more token, and the deferred ones are due
        outcomes.wait_for(ack=2, defer=3)
        clock.advance(timedelta(hours=1))
        outcomes.wait_for(ack=3)
    finally:
        stop(worker, thread)
    # with attempts=1, a deferral that spent an attempt would have dead-lettered the job
    assert attempts == [1, 1, 1]
    assert outcomes.count(cq.Outcome.DEAD_LETTER) == 0


def test_a_concurrency_limit_holds_across_the_worker_threads(
        app: cq.App, clock: FakeClock, outcomes: Outcomes) -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    first_started = threading.Event()
    release = threading.Event()
    attempts: list[int] = []

    @app.job(concurrency=1, retry=cq.Retry(attempts=1))
    def sync(payload: Sync, ctx: cq.JobContext) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        attempts.append(ctx.attempt)
        first_started.set()
        release.wait(WAIT)
        with lock:
            running -= 1

    sync.enqueue_many([{"tenant": "a", "n": n} for n in range(3)])
    worker, thread = run_worker(app, concurrency=3)
    try:
        assert first_started.wait(WAIT)
        outcomes.wait_for(defer=2)  # the other two threads took a message each and gave it back
        release.set()
        outcomes.wait_for(ack=1)
        while outcomes.count(cq.Outcome.ACK) < 3:
            clock.advance(timedelta(seconds=1))  # retry_after: deferred ones come back
            with outcomes.changed:
                outcomes.changed.wait(0.2)
            assert outcomes.count(cq.Outcome.DEFER) < 100
    finally:
        release.set()
        stop(worker, thread)
    assert most == 1
    assert attempts == [1, 1, 1]


def test_a_per_key_limit_holds_each_tenant_apart(app: cq.App, outcomes: Outcomes) -> None:
    ran: list[str] = []

    @app.job(rate_limit=cq.RateLimit("1/h", key=lambda p: p.tenant))
    def sync(payload: Sync) -> None:
        ran.append(payload.tenant)

    sync.enqueue_many([{"tenant": t} for t in ("a", "b", "a", "c")])
    worker, thread = run_worker(app, concurrency=2)
    try:
        outcomes.wait_for(ack=3, defer=1)
    finally:
        stop(worker, thread)
    assert sorted(ran) == ["a", "b", "c"]
    [deferred] = [r for r in outcomes.results if r.outcome is cq.Outcome.DEFER]
    assert "key 'a'" in str(deferred.reason)


def test_drain_ignores_limits(app: cq.App) -> None:
    ran: list[int] = []

    @app.job(rate_limit="1/h", concurrency=1)
    def sync(payload: Sync) -> None:
        ran.append(payload.n)

    sync.enqueue_many([{"tenant": "a", "n": n} for n in range(3)])
    assert app.drain().succeeded == 3 and sorted(ran) == [0, 1, 2]


def test_a_key_function_that_raises_fails_the_attempt_with_the_reason(app: cq.App, outcomes: Outcomes) -> None:
    @app.job(concurrency=cq.Concurrency(1, key=lambda p: p.missing), retry=cq.Retry(attempts=1))
    def sync(payload: Sync) -> None: ...

    sync.enqueue({"tenant": "a"})
    worker, thread = run_worker(app, concurrency=1)
    try:
        outcomes.wait_for(dead_letter=1)
    finally:
        stop(worker, thread)
    [dead] = outcomes.results
    assert "the limit's key function raised AttributeError" in str(dead.reason)


def test_idle_per_key_buckets_are_forgotten_and_come_back_full(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudqueue import limits

    monkeypatch.setattr(limits, "_PRUNE_AT", 3)
    store = LocalLimits()
    for tenant in "abc":
        assert store.take_token(("sync", tenant), 1, 60.0, 0.0) == 0.0
    assert store.take_token(("sync", "a"), 1, 60.0, 30.0) > 0  # a is not idle for long: no prune
    assert len(store._buckets) == 3
    assert store.take_token(("sync", "d"), 1, 60.0, 61.0) == 0.0  # b and c idle a period: gone
    assert set(store._buckets) == {("sync", "a"), ("sync", "d")}
    assert store.take_token(("sync", "b"), 1, 60.0, 61.0) == 0.0  # back, full
