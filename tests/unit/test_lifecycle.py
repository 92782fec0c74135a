"""One lifecycle: middleware, events, structured reasons, and no exception escapes a job."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend

from .models import Receipt

FAST = {"poll_wait": timedelta(milliseconds=50), "handle_signals": False}


class Recorder(cq.Middleware):
    """Writes down every hook call, in order, under its name."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def enqueue(self, messages: Sequence[cq.OutgoingMessage],
                call_next: Callable[[Sequence[cq.OutgoingMessage]], list[str]]) -> list[str]:
        self.log.append(f"{self.name}:enqueue {len(messages)}")
        return call_next(messages)

    def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
        self.log.append(f"{self.name}:before {task.job.name} attempt {task.attempt}")
        try:
            return call_next()
        finally:
            self.log.append(f"{self.name}:after")

    def settled(self, result: cq.Result) -> None:
        kind = result.reason.kind.value if result.reason else "-"
        self.log.append(f"{self.name}:settled {result.outcome.value} {kind}")


def _app(*middleware: cq.Middleware, backend: cq.Backend | None = None) -> cq.App:
    return cq.App("t", backend=backend or MemoryBackend(), middleware=list(middleware))


def test_middleware_wrap_in_list_order_and_see_every_settle() -> None:
    log: list[str] = []
    app = _app(Recorder("outer", log), Recorder("inner", log))

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def flaky(payload: Receipt, ctx: cq.JobContext) -> None:
        log.append(f"job attempt {ctx.attempt}")
        if ctx.attempt == 1:
            raise ConnectionError("mail server down")

    flaky.enqueue(Receipt(to="a", order_id="1"))
    report = app.drain(follow_delays=True)
    assert (report.succeeded, report.retried) == (1, 1)
    assert log == [
        "outer:enqueue 1", "inner:enqueue 1",
        "outer:before flaky attempt 1", "inner:before flaky attempt 1", "job attempt 1",
        "inner:after", "outer:after",
        "outer:settled retry failed", "inner:settled retry failed",
        "outer:before flaky attempt 2", "inner:before flaky attempt 2", "job attempt 2",
        "inner:after", "outer:after",
        "outer:settled ack -", "inner:settled ack -",
    ]


def test_an_enqueue_middleware_may_change_each_outgoing_message() -> None:
    class Stamp(cq.Middleware):
        def enqueue(self, messages: Sequence[cq.OutgoingMessage],
                    call_next: Callable[[Sequence[cq.OutgoingMessage]], list[str]]) -> list[str]:
            return call_next([dataclasses.replace(m, delay=timedelta(hours=1)) for m in messages])

    backend = MemoryBackend()
    app = _app(Stamp(), backend=backend)

    @app.job
    def work(payload: Receipt) -> None: ...

    work.enqueue_many([Receipt(to="a", order_id="1"), Receipt(to="b", order_id="2")])
    assert backend.stats().delayed == 2 and app.drain().processed == 0


def test_a_middleware_can_skip_a_job_so_it_is_acked_without_running() -> None:
    class SeenBefore(cq.Middleware):
        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            if task.payload.order_id == "dup":
                raise cq.Skip("completed before")
            return call_next()

    backend = MemoryBackend()
    app = _app(SeenBefore(), backend=backend)
    ran: list[str] = []

    @app.job
    def work(payload: Receipt) -> None:
        ran.append(payload.order_id)

    work.enqueue_many([Receipt(to="a", order_id="dup"), Receipt(to="a", order_id="new")])
    report = app.drain()
    assert ran == ["new"] and (report.skipped, report.succeeded) == (1, 1)
    assert backend.stats().waiting == 0 and backend.dead_letters() == []


def test_a_middleware_can_defer_a_job_without_spending_an_attempt(cq_app: cq.App, cq_backend: Any) -> None:
    class OncePerMinute(cq.Middleware):
        def __init__(self) -> None:
            self.deferred = 0

        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            if self.deferred < 3:
                self.deferred += 1
                raise cq.Defer(timedelta(minutes=1), "rate limit")
            return call_next()

    cq_app.add_middleware(OncePerMinute())
    attempts: list[int] = []

    @cq_app.job(retry=cq.Retry(attempts=1))
    def work(payload: Receipt, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)

    work.enqueue(Receipt(to="a", order_id="1"))
    report = cq_app.drain(follow_delays=True)
    assert (report.deferred, report.succeeded) == (3, 1)
    assert attempts == [1]  # three deferrals spent none of its single attempt


def test_a_middleware_that_raises_before_the_job_fails_that_attempt_by_the_retry_policy() -> None:
    class Broken(cq.Middleware):
        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            raise RuntimeError("tracer misconfigured")

    backend = MemoryBackend()
    app = _app(Broken(), backend=backend)
    ran: list[str] = []

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def work(payload: Receipt) -> None:
        ran.append("ran")

    work.enqueue(Receipt(to="a", order_id="1"))
    report = app.drain(follow_delays=True)
    assert ran == [] and (report.retried, report.dead_lettered) == (1, 1)
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.EXHAUSTED
    assert "a middleware failed before the job ran: RuntimeError: tracer misconfigured" in letter.reason


def test_a_middleware_that_raises_after_the_job_ran_does_not_run_it_again() -> None:
    class Noisy(cq.Middleware):
        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            call_next()
            raise RuntimeError("metrics exporter down")

        def settled(self, result: cq.Result) -> None:
            raise RuntimeError("log shipper down")

    backend = MemoryBackend()
    app = _app(Noisy(), backend=backend)
    ran: list[str] = []

    @app.job
    def work(payload: Receipt) -> None:
        ran.append("ran")

    work.enqueue(Receipt(to="a", order_id="1"))
    report = app.drain(follow_delays=True)
    assert ran == ["ran"] and report.succeeded == 1
    assert backend.stats().waiting == 0 and backend.dead_letters() == []


def test_a_middleware_that_forgets_call_next_loses_nothing() -> None:
    class Forgetful(cq.Middleware):
        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            return None

    backend = MemoryBackend()
    app = _app(Forgetful(), backend=backend)

    @app.job(retry=cq.Retry(attempts=1))
    def work(payload: Receipt) -> None: ...

    work.enqueue(Receipt(to="a", order_id="1"))
    assert app.drain().dead_lettered == 1
    assert "returned without running the job" in backend.dead_letters()[0].reason


def test_app_on_events_fire_after_each_settle() -> None:
    backend = MemoryBackend()
    app = _app(backend=backend)
    seen: list[tuple[str, str | None]] = []
    for event in ("completed", "failed", "retrying", "dead_lettered"):
        app.on(event, lambda result, event=event: seen.append((event, result.job_id)))

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def work(payload: Receipt) -> None:
        if payload.order_id == "bad":
            raise ValueError("no such order")

    good = work.enqueue(Receipt(to="a", order_id="ok"))
    bad = work.enqueue(Receipt(to="a", order_id="bad"))
    app.drain(follow_delays=True)
    assert ("completed", good) in seen
    assert [e for e, job in seen if job == bad] == ["failed", "retrying", "failed", "dead_lettered"]


def test_an_unknown_event_name_is_refused_with_a_suggestion() -> None:
    with pytest.raises(cq.ConfigurationError, match="did you mean 'dead_lettered'"):
        _app().on("dead_letered", print)


def test_middleware_must_be_instances() -> None:
    with pytest.raises(cq.ConfigurationError, match=r"cq\.Middleware instances"):
        cq.App("t", backend="memory://", middleware=[Recorder])  # type: ignore[list-item]


@pytest.mark.parametrize("exc", [SystemExit(3), GeneratorExit(), BaseException("odd")])
def test_a_base_exception_from_a_job_fails_it_by_its_retry_policy_in_drain(exc: BaseException) -> None:
    backend = MemoryBackend()
    app = _app(backend=backend)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def work(payload: Receipt) -> None:
        raise exc

    work.enqueue(Receipt(to="a", order_id="1"))
    report = app.drain(follow_delays=True)
    assert (report.retried, report.dead_lettered) == (1, 1)
    assert backend.dead_letters()[0].kind is cq.ReasonKind.EXHAUSTED


def test_keyboard_interrupt_in_drain_gives_the_message_back_and_stops() -> None:
    backend = MemoryBackend()
    app = _app(backend=backend)

    @app.job
    def work(payload: Receipt) -> None:
        raise KeyboardInterrupt

    work.enqueue_many([Receipt(to="a", order_id=str(n)) for n in range(3)])
    with pytest.raises(KeyboardInterrupt):
        app.drain()
    assert [m.receives for m in backend.pending()] == [0, 0, 0]  # nothing counted as an attempt


@pytest.mark.parametrize("concurrency", [1, 2])
def test_system_exit_in_a_job_kills_no_consumer_and_run_until_empty_returns(concurrency: int) -> None:
    backend = MemoryBackend()
    app = _app(backend=backend)
    ran: list[str] = []

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(0))))
    def work(payload: Receipt) -> None:
        ran.append(payload.order_id)
        if payload.order_id == "exit":
            raise SystemExit(1)

    work.enqueue_many([Receipt(to="a", order_id=o) for o in ("exit", "1", "2", "3")])
    done = threading.Event()
    stats: list[Any] = []

    def run() -> None:
        stats.append(app.worker(concurrency=concurrency, **FAST).run(until_empty=True))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(20), "run(until_empty=True) did not return"
    assert (stats[0].succeeded, stats[0].retried, stats[0].dead_lettered) == (3, 1, 1)
    assert sorted(ran) == ["1", "2", "3", "exit", "exit"]
    assert backend.stats().waiting == 0 and backend.stats().in_flight == 0


def test_keyboard_interrupt_in_a_worker_job_gives_its_message_back_and_stops_the_worker() -> None:
    backend = MemoryBackend()
    app = _app(backend=backend)

    @app.job
    def work(payload: Receipt) -> None:
        raise KeyboardInterrupt

    work.enqueue(Receipt(to="a", order_id="1"))
    stats = app.worker(concurrency=1, **FAST).run()
    assert stats.released == 1
    [pending] = backend.pending()
    assert pending.receives == 0 and not pending.in_flight


def test_the_heartbeat_follows_the_visibility_in_force_so_a_long_job_runs_once() -> None:
    backend = MemoryBackend(visibility_timeout=timedelta(seconds=1))  # the queue's own setting
    app = _app(backend=backend)
    running = 0
    overlaps = 0
    runs = 0
    lock = threading.Lock()

    @app.job(retry=cq.Retry(attempts=1))
    def slow(payload: Receipt) -> None:
        nonlocal running, overlaps, runs
        with lock:
            running += 1
            runs += 1
            overlaps += running > 1
        time.sleep(3.5)  # three and a half windows
        with lock:
            running -= 1

    slow.enqueue(Receipt(to="a", order_id="1"))
    stats = app.worker(concurrency=3, **FAST).run(until_empty=True)
    assert (runs, overlaps, stats.succeeded, stats.dead_lettered) == (1, 0, 1, 0)
    assert backend.dead_letters() == []


def test_on_stop_the_heartbeat_runs_until_the_running_job_settles() -> None:
    backend = MemoryBackend(visibility_timeout=timedelta(seconds=1))
    app = _app(backend=backend)
    started = threading.Event()
    runs: list[float] = []

    @app.job
    def slow(payload: Receipt) -> None:
        runs.append(time.monotonic())
        started.set()
        time.sleep(2.5)

    slow.enqueue(Receipt(to="a", order_id="1"))
    first = app.worker(concurrency=1, **FAST)
    second = app.worker(concurrency=1, **FAST)
    threading.Thread(target=first.run, daemon=True).start()
    assert started.wait(10)
    first.stop()  # the job goes on; a second worker polls the same queue meanwhile
    other = threading.Thread(target=second.run, daemon=True)
    other.start()
    deadline = time.monotonic() + 10
    while backend.stats().in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    second.stop()
    other.join(10)
    assert len(runs) == 1 and backend.stats().waiting == 0 and backend.dead_letters() == []


def test_a_stale_settle_changes_nothing_and_is_reported_as_stalled(cq_app: cq.App, cq_clock: Any,
                                                                   cq_backend: MemoryBackend) -> None:
    stalled: list[str | None] = []
    cq_app.on("stalled", lambda result: stalled.append(result.job_id))

    @cq_app.job
    def slow(payload: Receipt) -> None:
        cq_clock.advance(timedelta(minutes=1))  # outlives the 30 s visibility...
        cq_backend.receive()  # ...and someone else takes the message meanwhile

    job_id = slow.enqueue(Receipt(to="a", order_id="1"))
    cq_app.drain()
    assert stalled == [job_id]
    [pending] = cq_backend.pending()
    assert pending.in_flight and pending.receives == 2  # the other consumer still holds it


@pytest.mark.parametrize(("stored", "kind", "text"), [
    ("poison: not a cloudqueue envelope", cq.ReasonKind.POISON, "not a cloudqueue envelope"),
    ("exhausted: attempt 3 of 3 failed: E", cq.ReasonKind.EXHAUSTED, "attempt 3 of 3 failed: E"),
    ("max receives exceeded: moved by the queue", cq.ReasonKind.UNSETTLED, "moved by the queue"),
    ("something else: entirely", cq.ReasonKind.OTHER, "something else: entirely"),
])
def test_stored_reasons_read_back_as_kind_and_text(stored: str, kind: cq.ReasonKind, text: str) -> None:
    reason = cq.Reason.parse(stored)
    assert (reason.kind, reason.text) == (kind, text)
    assert cq.Reason.parse(str(reason)) == reason
