"""Worker guarantees under faults, with real worker processes against moto server.

Each test runs ``cloudqueue worker tests.faults.worker_app:app`` in subprocesses, injects a
fault (SIGKILL, SIGTERM with a second worker polling, jobs longer than the visibility, a job
raising SystemExit) and counts from the run log and the queues: enqueued, ran, completed,
dead-lettered, lost and overlapping runs. Lost and overlapping must be 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cloudqueue as cq

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "cloudqueue"


@dataclass
class Counts:
    """What happened to the jobs of one test, from the run log and the queues."""

    enqueued: int
    runs: int = 0
    completed: set[str] = field(default_factory=set)
    dead_lettered: set[str] = field(default_factory=set)
    overlapping: int = 0
    runs_by_job: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.enqueued - len(self.completed | self.dead_lettered)

    def row(self) -> str:
        return (f"enqueued {self.enqueued}, runs {self.runs}, completed {len(self.completed)}, "
                f"dead-lettered {len(self.dead_lettered)}, lost {self.lost}, overlapping {self.overlapping}")


class Fleet:
    """Worker processes on one queue, and what they logged."""

    def __init__(self, url: str, runs: Path, logs: Path) -> None:
        self.url, self.runs, self.logs = url, runs, logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed_at: dict[int, float] = {}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CLOUDQUEUE_URL": self.url, "CQ_FAULT_RUNS": str(self.runs),
               "PYTHONPATH": str(ROOT)}
        with (self.logs / f"worker-{len(self.procs)}.log").open("wb") as out:
            proc = subprocess.Popen([str(CLI), "-v", "worker", "tests.faults.worker_app:app", *args],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed_at[proc.pid] = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_for(self, what: Callable[[list[tuple[str, str, int, float]]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what(self.events()):
                return
            time.sleep(0.05)
        runs = self.runs.read_text() if self.runs.exists() else ""
        raise AssertionError(f"timed out after {timeout}s; run log:\n{runs}\nworker logs:\n{self.worker_logs()}")

    def events(self) -> list[tuple[str, str, int, float]]:
        if not self.runs.exists():
            return []
        out = []
        for line in self.runs.read_text().splitlines():
            event, job, pid, at = line.split()
            out.append((event, job, int(pid), float(at)))
        return out

    def worker_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def count(self, enqueued: int, dead_lettered: set[str]) -> Counts:
        counts = Counts(enqueued=enqueued, dead_lettered=dead_lettered)
        open_runs: dict[tuple[str, int], float] = {}
        spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for event, job, pid, at in self.events():
            if event == "start":
                counts.runs += 1
                counts.runs_by_job[job] = counts.runs_by_job.get(job, 0) + 1
                open_runs[(job, pid)] = at
            else:
                spans[job].append((open_runs.pop((job, pid)), at))
                if event == "end":
                    counts.completed.add(job)
        for (job, pid), started in open_runs.items():  # a killed run ended when its process died
            spans[job].append((started, self.killed_at.get(pid, float("inf"))))
        for intervals in spans.values():  # a run that starts before an earlier one ended overlaps
            latest_end = float("-inf")
            for start, end in sorted(intervals):
                counts.overlapping += start < latest_end
                latest_end = max(latest_end, end)
        return counts


@pytest.fixture
def fleet(make_queue: Any, moto_server: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Fleet, cq.App, Any]]]:
    fleets: list[Fleet] = []

    def make(visibility: timedelta) -> tuple[Fleet, cq.App, Any]:
        pair = make_queue(prefix="faults", visibility_timeout=visibility)
        url = f"sqs://{pair.url.rsplit('/', 1)[-1]}?endpoint_url={moto_server}&region=us-east-1&wait=1"
        one = Fleet(url, tmp_path / "runs.log", tmp_path)
        fleets.append(one)
        from tests.faults import worker_app

        producer = cq.App("faults", backend=url)
        producer.job(worker_app.work.func, name="work")
        return one, producer, pair

    yield make
    for one in fleets:
        one.stop_all()


def _dead_lettered(sqs: Any, url: str) -> set[str]:
    """Job ids in a dead-letter queue (receiving them for good: the test is over)."""
    import json

    found: set[str] = set()
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            break
        found.update(json.loads(m["Body"])["id"] for m in got)
    return found


def _finish(proc: subprocess.Popen[bytes], fleet: Fleet, timeout: float = 60) -> None:
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker did not finish in {timeout}s:\n{fleet.worker_logs()}") from None
    assert code == 0, fleet.worker_logs()


def test_sigkill_mid_run_then_a_restarted_worker_runs_everything_once_more_at_most(
        fleet: Any, sqs: Any) -> None:
    one, producer, pair = fleet(timedelta(seconds=2))
    ids = producer.get_job("work").enqueue_many([{"n": n, "seconds": 1.5} for n in range(6)])
    first = one.start("-c", "2", "--visibility-timeout", "2")
    one.wait_for(lambda events: sum(e[0] == "start" for e in events) >= 2, timeout=30)
    one.kill(first)
    second = one.start("-c", "2", "--visibility-timeout", "2", "--until-empty")
    _finish(second, one)
    counts = one.count(len(ids), _dead_lettered(sqs, pair.dead_letter_url))
    print(counts.row())
    assert counts.completed == set(ids) and counts.lost == 0 and counts.overlapping == 0, counts.row()


def test_sigterm_during_a_job_longer_than_the_visibility_with_a_second_worker_polling(
        fleet: Any, sqs: Any) -> None:
    one, producer, pair = fleet(timedelta(seconds=2))
    [job_id] = producer.get_job("work").enqueue_many([{"n": 1, "seconds": 7}])
    first = one.start("-c", "1")  # the queue's own 2 s visibility
    one.wait_for(lambda events: any(e[0] == "start" for e in events), timeout=30)
    first.send_signal(signal.SIGTERM)
    second = one.start("-c", "2", "--until-empty")
    _finish(first, one, timeout=30)  # finishes its job, keeping it hidden all along, then exits
    _finish(second, one)
    counts = one.count(1, _dead_lettered(sqs, pair.dead_letter_url))
    print(counts.row())
    assert counts.runs == 1 and counts.completed == {job_id}, counts.row()
    assert counts.lost == 0 and counts.overlapping == 0


def test_jobs_longer_than_the_visibility_run_once_with_two_workers_polling(fleet: Any, sqs: Any) -> None:
    one, producer, pair = fleet(timedelta(seconds=1))
    ids = producer.get_job("work").enqueue_many([{"n": n, "seconds": 4} for n in range(3)])
    workers = [one.start("-c", "2", "--until-empty") for _ in range(2)]
    for proc in workers:
        _finish(proc, one)
    counts = one.count(len(ids), _dead_lettered(sqs, pair.dead_letter_url))
    print(counts.row())
    assert counts.runs == 3 and counts.completed == set(ids), counts.row()
    assert counts.lost == 0 and counts.overlapping == 0


def test_a_job_raising_system_exit_fails_by_its_retry_policy_and_the_worker_carries_on(
        fleet: Any, sqs: Any) -> None:
    one, producer, pair = fleet(timedelta(seconds=5))
    work = producer.get_job("work")
    bad = work.enqueue({"n": 0, "exit": True})
    good = work.enqueue_many([{"n": n} for n in range(1, 4)])
    proc = one.start("-c", "1", "--until-empty")  # one consumer: a dead thread would stall it all
    _finish(proc, one, timeout=90)
    counts = one.count(4, _dead_lettered(sqs, pair.dead_letter_url))
    print(counts.row())
    assert counts.completed == set(good) and counts.dead_lettered == {bad}, counts.row()
    assert counts.runs_by_job[bad] == 3  # Retry(attempts=3): it ran three times, then dead letters
    assert counts.lost == 0 and counts.overlapping == 0
