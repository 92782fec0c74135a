"""The local scheduler on memory, with a fake clock: each slot once, missed slots by policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.schedules import Scheduler
from cloudqueue.testing import FakeClock, enqueued_jobs

START = datetime(2026, 11, 29, 2, 59, 30, tzinfo=timezone.utc)


class Report(BaseModel):
    kind: str


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def app(clock: FakeClock) -> Iterator[cq.App]:
    app = cq.App("shop", backend=MemoryBackend(clock=clock))
    yield app
    app.close()


def nightly_app(app: cq.App, ran: list[Any], **cron: Any) -> Any:
    @app.job(schedule=cq.Cron("0 3 * * *", payload={"kind": "nightly"}, name="nightly", **cron))
    def nightly(payload: Report, ctx: cq.JobContext) -> None:
        ran.append((payload.kind, ctx.idempotency_key))

    return nightly


def test_a_due_slot_is_enqueued_once_with_its_slot_key(app: cq.App, clock: FakeClock) -> None:
    ran: list[Any] = []
    nightly_app(app, ran)
    scheduler = Scheduler(app)
    assert scheduler.tick() == []  # 02:59:30: nothing due
    assert scheduler.next_due() == datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
    clock.advance(timedelta(seconds=45))
    [fired] = scheduler.tick()
    assert fired.slot == datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
    assert scheduler.tick() == []  # the same minute again: nothing new
    app.drain()
    assert ran == [("nightly", "cron:nightly:nightly:2026-11-29T03:00:00Z")]


def test_a_second_scheduler_on_the_same_slot_names_the_same_job(app: cq.App, clock: FakeClock) -> None:
    ran: list[Any] = []
    nightly_app(app, ran)
    clock.advance(timedelta(seconds=45))
    first, second = Scheduler(app), Scheduler(app)  # e.g. a restart within the minute
    [a] = first.tick()
    [b] = second.tick()
    assert a.job_id == b.job_id
    assert len(enqueued_jobs(app.backend)) == 1  # the memory queue dropped the repeated key
    app.drain()
    assert len(ran) == 1


@pytest.mark.parametrize("store", [None, "memory://"])
def test_a_slot_delivered_again_after_it_ran_runs_once_with_a_store(clock: FakeClock, store: str | None) -> None:
    # The queue forgets a key once its message is consumed: a restarted scheduler that catches
    # up on the slot sends it again. The app's store remembers the slot's key and skips it.
    app = cq.App("shop", backend=MemoryBackend(clock=clock), store=store)
    ran: list[Any] = []
    nightly_app(app, ran, missed="catch_up")
    scheduler = Scheduler(app)
    clock.advance(timedelta(seconds=45))
    [first] = scheduler.tick()
    assert app.drain().succeeded == 1
    clock.advance(timedelta(minutes=5))
    [again] = Scheduler(app, catch_up=timedelta(hours=1)).tick()
    assert (again.slot, again.job_id) == (first.slot, first.job_id)
    report = app.drain()
    if store is None:
        assert len(ran) == 2  # what the store is for
    else:
        assert (report.succeeded, report.skipped) == (0, 1)
        assert ran == [("nightly", "cron:nightly:nightly:2026-11-29T03:00:00Z")]
        record = app.store_record(idempotency_key="cron:nightly:nightly:2026-11-29T03:00:00Z")
        assert record is not None and record.runs == 1
    app.close()


def test_skip_drops_slots_missed_while_asleep_and_keeps_the_current_one(app: cq.App, clock: FakeClock,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    ran: list[Any] = []

    @app.job(schedule=cq.Cron("*/10 * * * *", payload={"kind": "often"}, name="often"))
    def often(payload: Report, ctx: cq.JobContext) -> None:
        ran.append(ctx.idempotency_key)

    scheduler = Scheduler(app, grace=timedelta(minutes=1))
    clock.advance(timedelta(minutes=40, seconds=40))  # 03:40:10: 03:00, 03:10, 03:20, 03:30 missed
    fired = scheduler.tick()
    assert [f.slot.strftime("%H:%M") for f in fired] == ["03:40"]
    assert "skipped 4 missed slot(s)" in caplog.text


def test_catch_up_enqueues_missed_slots_oldest_first_up_to_its_limit(app: cq.App, clock: FakeClock) -> None:
    @app.job(schedule=cq.Cron("*/10 * * * *", payload={"kind": "often"}, name="often",
                              missed="catch_up", catch_up_limit=3))
    def often(payload: Report) -> None: ...

    scheduler = Scheduler(app)
    clock.advance(timedelta(minutes=40, seconds=40))
    fired = scheduler.tick()
    assert [f.slot.strftime("%H:%M") for f in fired] == ["03:20", "03:30", "03:40"]
    assert len(enqueued_jobs(app.backend)) == 3


def test_catch_up_on_start_looks_back_as_far_as_asked(app: cq.App, clock: FakeClock) -> None:
    ran: list[Any] = []
    nightly_app(app, ran, missed="catch_up")
    clock.advance(timedelta(days=2))  # 2026-12-01 02:59:30: the slots of the 29th and 30th passed
    scheduler = Scheduler(app, catch_up=timedelta(days=2))
    fired = scheduler.tick()
    assert [f.slot.strftime("%m-%d") for f in fired] == ["11-29", "11-30"]
    app.drain()
    assert [key for _, key in ran] == ["cron:nightly:nightly:2026-11-29T03:00:00Z",
                                       "cron:nightly:nightly:2026-11-30T03:00:00Z"]


def test_run_follows_the_clock_from_slot_to_slot_until_stopped(app: cq.App, clock: FakeClock) -> None:
    ran: list[Any] = []

    @app.job(schedule=cq.Cron("0 * * * *", payload={"kind": "hourly"}, name="hourly"))
    def hourly(payload: Report) -> None:
        ran.append(payload.kind)

    scheduler = Scheduler(app)
    original = scheduler.tick

    def tick() -> list[Any]:
        fired = original()
        if len(enqueued_jobs(app.backend)) >= 3:
            scheduler.stop()
        return fired

    scheduler.tick = tick  # type: ignore[method-assign]
    scheduler.run()  # the fake clock's sleep jumps to each slot
    assert [j.idempotency_key for j in enqueued_jobs(app.backend)] == [
        f"cron:hourly:hourly:2026-11-29T0{h}:00:00Z" for h in (3, 4, 5)]


def test_an_app_without_schedules_has_nothing_to_run(app: cq.App) -> None:
    with pytest.raises(cq.ConfigurationError, match="no job with a schedule="):
        Scheduler(app).run()


@pytest.fixture
def cron_app_queue() -> Iterator[MemoryBackend]:
    """A fresh named memory queue for tests.schedules.cron_app:app (slot keys of an earlier
    test would be dropped as duplicates by the last one)."""
    from .cron_app import app as cron_app

    backend = MemoryBackend(name="cron-tests")
    cron_app.backend = backend
    yield backend
    backend.close()


def test_cli_scheduler_once_enqueues_the_due_slot(cron_app_queue: MemoryBackend) -> None:
    from cloudqueue.cli import cli

    backend = cron_app_queue
    result = CliRunner().invoke(cli, ["scheduler", "tests.schedules.cron_app:app", "--once"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "minutely" in result.stdout and "report" in result.stdout
    [job] = enqueued_jobs(backend)
    assert job.idempotency_key is not None and job.idempotency_key.startswith("cron:report:minutely:")


def test_cli_scheduler_refuses_an_app_without_schedules() -> None:
    from cloudqueue.cli import cli

    result = CliRunner().invoke(cli, ["scheduler", "tests.unit.cli_app:app", "--once"])
    assert result.exit_code == 1
    assert "no job with a schedule=" in result.output


def test_cli_worker_with_schedules_runs_the_due_slot(cron_app_queue: MemoryBackend) -> None:
    from cloudqueue.cli import cli

    backend = cron_app_queue
    result = CliRunner().invoke(cli, ["worker", "tests.schedules.cron_app:app", "--schedules", "--until-empty",
                                      "--concurrency", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].split()[0] == "1"  # succeeded: the slot due now ran
    assert backend.pending() == []


def test_cli_worker_with_schedules_refuses_an_app_without_any() -> None:
    from cloudqueue.cli import cli

    result = CliRunner().invoke(cli, ["worker", "tests.unit.cli_app:app", "--schedules", "--until-empty"])
    assert result.exit_code == 1
    assert "no job with a schedule=; drop --schedules" in result.output
