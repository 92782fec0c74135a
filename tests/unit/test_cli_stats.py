"""``cloudqueue stats``: a row per queue, unknown never shown as 0, JSON for scripts, and a
watch mode with rates from the queue's own running totals, run as a real process."""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue import _stats
from cloudqueue.backends.base import OutgoingMessage
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
SPEC = "tests.unit.stats_app"
COMMAND = [sys.executable, "-c", "from cloudqueue.cli import main; main()", "stats"]


def stats(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*COMMAND, *args], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "PYTHONWARNINGS": "error"})
    assert (done.returncode == 0) is ok, done.stderr
    return done


def rows(table: str) -> list[list[str]]:
    """A table's rows as cells (columns are two or more spaces apart), rule line dropped."""
    import re

    lines = [line for line in table.splitlines() if line.strip() and not set(line) <= {"-", " "}]
    return [re.split(r"\s{2,}", line.strip()) for line in lines]


# -- the queue's own figures ---------------------------------------------------------------

def _msg(n: int, **options: Any) -> OutgoingMessage:
    return OutgoingMessage(body=b'{"n":%d}' % n, job_id=f"j{n}", job_type="t", **options)


def test_the_memory_queue_keeps_running_totals_of_completed_and_failed_deliveries() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    backend.send([_msg(n) for n in range(5)])
    first, second, third, fourth, fifth = backend.receive(max_messages=5)
    backend.ack(first)
    backend.ack(second)
    backend.retry(third, timedelta(0))           # a failed attempt: counted, still in the queue
    backend.dead_letter(fourth, cq.Reason(cq.ReasonKind.PERMANENT, "no"))
    backend.release(fifth)                       # given back unstarted: not a failure
    assert backend.stats() == cq.QueueStats(waiting=2, in_flight=0, delayed=0, dead_lettered=1,
                                            oldest_age=timedelta(0), completed=2, failed=2)
    assert backend.redrive() == 1                # a redriven dead letter that completes counts once
    for delivery in backend.receive(max_messages=5):
        backend.ack(delivery)
    after = backend.stats()
    assert (after.completed, after.failed, after.waiting, after.dead_lettered) == (5, 2, 0, 0)
    backend.send([_msg(9)])
    assert backend.purge() == 1                  # purged messages were never completed
    assert backend.stats().completed == 5


def test_rates_come_from_the_totals_both_samples_know_and_a_restart_gives_none() -> None:
    def at(seconds: float, **figures: Any) -> _stats.QueueSample:
        return _stats.QueueSample("orders", "memory", seconds, cq.QueueStats(**figures))

    before = at(10.0, waiting=10, in_flight=2, delayed=0, completed=100, failed=4)
    after = at(12.0, waiting=4, in_flight=2, delayed=0, completed=110, failed=5)
    assert _stats.rates(before, after) == _stats.Rates(2.0, 5.0, 0.5, -3.0)
    unknown = _stats.rates(at(0.0, waiting=3), at(2.0, waiting=7))
    assert unknown == _stats.Rates(2.0, None, None, 2.0)
    restarted = _stats.rates(before, at(12.0, waiting=0, completed=3, failed=0))
    assert restarted is not None and (restarted.completed, restarted.failed) == (None, None)
    failed = _stats.QueueSample("orders", "memory", 12.0, error="unreachable")
    assert _stats.rates(before, failed) is None


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3599, "59m59s"), (3600 * 2 + 180, "2h03m"),
    (86400 + 3600 * 4, "1d04h"), (None, "unknown")])
def test_ages_read_at_a_glance(seconds: float | None, text: str) -> None:
    assert _stats.age_text(None if seconds is None else timedelta(seconds=seconds)) == text


# -- the command, in its own process -------------------------------------------------------

def test_one_shot_table_has_a_row_per_queue_with_the_queues_totals() -> None:
    done = stats(f"{SPEC}:app")
    assert rows(done.stdout) == [
        ["queue", "waiting", "in flight", "delayed", "dead letters", "oldest", "completed", "failed"],
        ["stats-demo", "2", "0", "1", "2", rows(done.stdout)[1][5], "4", "2"]]
    assert rows(done.stdout)[1][5].endswith("s")  # an age, not unknown: memory knows it


def test_json_is_one_document_with_the_same_figures() -> None:
    document = json.loads(stats(f"{SPEC}:app", "--json").stdout)
    [queue] = document["queues"]
    assert document["time"].endswith("Z")
    assert {k: v for k, v in queue.items() if k != "oldest_age_seconds"} == {
        "queue": "stats-demo", "backend": "memory", "error": None, "waiting": 2, "in_flight": 0,
        "delayed": 1, "dead_lettered": 2, "completed": 4, "failed": 2}
    assert queue["oldest_age_seconds"] >= 0


def test_what_the_queue_cannot_tell_is_unknown_in_the_table_and_null_in_json_never_0() -> None:
    [_, row] = rows(stats(f"{SPEC}:partial").stdout)
    assert row == ["stats-partial", "5", "unknown", "unknown", "unknown", "unknown", "unknown", "unknown"]
    [queue] = json.loads(stats(f"{SPEC}:partial", "--json").stdout)["queues"]
    assert queue["waiting"] == 5
    assert all(queue[k] is None for k in ("in_flight", "delayed", "dead_lettered", "oldest_age_seconds",
                                          "completed", "failed"))


def test_a_queue_that_cannot_be_reached_is_named_with_its_error_and_exits_1() -> None:
    done = stats(f"{SPEC}:broken", ok=False)
    assert done.returncode == 1
    assert "stats-broken: error: queue service at 127.0.0.1:9 refused the connection" in done.stdout
    [queue] = json.loads(stats(f"{SPEC}:broken", "--json", ok=False).stdout)["queues"]
    assert queue["error"] == "queue service at 127.0.0.1:9 refused the connection"
    assert "waiting" not in queue


def test_watch_prints_frame_after_frame_with_rates_when_not_on_a_terminal() -> None:
    out = stats(f"{SPEC}:app", "--watch", "0.2", "--count", "3").stdout
    assert "\x1b[" not in out
    frames = [frame for frame in out.split("\n\n") if frame.strip()]
    assert len(frames) == 3
    for index, frame in enumerate(frames):
        header, *table = frame.splitlines()
        assert header.endswith("UTC  every 0.2s (Ctrl-C stops)")
        [_, row] = rows("\n".join(table))
        assert row[:5] == ["stats-demo", "2", "0", "1", "2"]
        # nothing moves on this queue: rates are 0.0, and only after a first sample
        assert row[6:] == (["-", "-", "-"] if index == 0 else ["0.0", "0.0", "0.0"])


def test_watch_json_rates_are_the_change_of_the_queues_own_totals_per_second() -> None:
    lines = stats(f"{SPEC}:busy", "--watch=0.3", "--count", "3", "--json").stdout.splitlines()
    samples = [json.loads(line)["queues"][0] for line in lines]
    assert len(samples) == 3 and samples[0]["rates"] is None
    for before, after in itertools.pairwise(samples):
        rates = after["rates"]
        assert after["completed"] >= before["completed"]
        assert rates["completed_per_second"] == pytest.approx(
            (after["completed"] - before["completed"]) / rates["seconds"], rel=0.01)
        assert rates["failed_per_second"] == 0.0


def test_watch_redraws_in_place_on_a_terminal() -> None:
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen([*COMMAND, f"{SPEC}:app", "--watch", "0.2", "--count", "2"],
                               stdout=follower, stderr=subprocess.PIPE, cwd=ROOT)
    os.close(follower)
    out = b""
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    process.stderr.close()
    assert out.count(b"\x1b[H\x1b[2J") == 2  # home and clear before each frame
    assert out.count(b"stats-demo") == 2


def test_ctrl_c_ends_watch_cleanly() -> None:
    process = subprocess.Popen([*COMMAND, f"{SPEC}:busy", "--watch", "0.2"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None and process.stderr is not None
    try:
        seen = [process.stdout.readline() for _ in range(4)]  # the first frame is out: it runs
        assert any(line.startswith("stats-busy") for line in seen), seen
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=60)
    errors = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors


def test_watch_given_the_target_as_its_seconds_says_how_to_write_it() -> None:
    done = stats("--watch", f"{SPEC}:app", ok=False)
    assert "is not a number of seconds (write TARGET before --watch, or --watch=SECONDS)" in done.stderr


def test_watch_goes_on_through_a_queue_that_cannot_be_reached_showing_its_error() -> None:
    out = stats(f"{SPEC}:broken", "--watch", "0.1", "--count", "2").stdout
    frames = [frame for frame in out.split("\n\n") if frame.strip()]
    assert len(frames) == 2
    assert all(frame.splitlines()[-1] == "stats-broken: error: queue service at 127.0.0.1:9 refused the "
               "connection" for frame in frames)
