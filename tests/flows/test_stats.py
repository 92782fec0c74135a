"""``cloudqueue stats MODULE:APP``: a flows section (per status, the oldest running flow's
age) read from the app's store by another process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.testing import FakeClock
from tests.store.stores import store_url

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.flows.cli_app:app"


def stats(store: str | None, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("CLOUDQUEUE_STORE_URL", None)
    if store is not None:
        env["CLOUDQUEUE_STORE_URL"] = store
    done = subprocess.run([sys.executable, "-c", "from cloudqueue.cli import main; main()", "stats", APP, *args],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode == 0) is ok, done.stderr
    return done


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.parametrize("kind", ["dynamodb", "firestore"])
def test_stats_counts_the_flows_per_status_and_ages_the_oldest_running_one(kind: str,
                                                                          request: pytest.FixtureRequest) -> None:
    store = store_url(kind, request)
    clock = FakeClock(datetime.now(timezone.utc) - timedelta(hours=3))
    app = cq.App("clishop", backend="memory://", store=store, clock=clock)
    from tests.flows import cli_app

    for job in cli_app.app.jobs.values():
        app.job(name=job.name)(job.func)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    app.flow(ship.message(cli_app.Order(order_id="o-1")), flow_id="oldest",
             children=[reserve.message(cli_app.Item(sku="a"))])
    clock.advance(timedelta(hours=1))
    app.flow(ship.message(cli_app.Order(order_id="o-2")), flow_id="broken",
             children=[reserve.message(cli_app.Item(sku="b", fail=True))])
    app.flow(ship.message(cli_app.Order(order_id="o-3")), flow_id="shipped",
             children=[reserve.message(cli_app.Item(sku="c"))])
    # run all but the oldest flow's child: it stays running
    app.backend.receive(max_messages=1)
    app.drain()
    clock.advance(timedelta(hours=1))
    app.flow(ship.message(cli_app.Order(order_id="o-4")), flow_id="newest",
             children=[reserve.message(cli_app.Item(sku="d"))])
    assert {f.id: f.status for f in app.list_flows()} == {
        "oldest": "running", "broken": "failed", "shipped": "succeeded", "newest": "running"}

    shown = stats(store).stdout.splitlines()
    at = next(i for i, line in enumerate(shown) if line.startswith("flows"))
    assert cells(shown[at]) == ["flows", "running", "ready", "parent enqueued", "succeeded", "parent failed",
                                "failed", "oldest running"]
    row = cells(shown[at + 2])
    assert row[:7] == ["4", "2", "0", "0", "1", "0", "1"]
    assert re.fullmatch(r"3h0\dm \(oldest\)", row[7]), row  # three hours and the seconds the test took

    document = json.loads(stats(store, "--json").stdout)
    flows = document["flows"]
    assert flows["counts"] == {"running": 2, "ready": 0, "parent_enqueued": 0, "succeeded": 1,
                               "parent_failed": 0, "failed": 1}
    assert flows["total"] == 4 and flows["oldest_running_id"] == "oldest" and flows["truncated"] is False
    assert 3 * 3600 <= flows["oldest_running_age"] < 4 * 3600

    watched = stats(store, "--json", "--watch", "0.1", "--count", "2").stdout.splitlines()
    assert [json.loads(line)["flows"]["total"] for line in watched] == [4, 4]
    frames = stats(store, "--watch", "0.1", "--count", "1").stdout
    assert "oldest running" in frames and "(oldest)" in frames
    app.close()


def test_stats_notes_a_private_memory_store_in_one_line() -> None:
    out = stats("memory://").stdout.splitlines()
    assert [line for line in out if line.startswith("flows")] == [
        "flows: app 'clishop' keeps its flows in a private in-process memory store, which this command "
        "cannot see"]
    assert json.loads(stats("memory://", "--json").stdout)["flows"]["note"].startswith("app 'clishop' keeps")


def test_stats_has_no_flows_section_without_a_store() -> None:
    out = stats(None).stdout
    assert "flows" not in out
    assert json.loads(stats(None, "--json").stdout)["flows"] is None


class Ping(BaseModel):
    n: int = 0


def test_watch_reads_the_flows_section_again_only_every_flows_every_seconds(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing flows reads every flow's head: a fast --watch reads them once per FLOWS_EVERY."""
    from cloudqueue import _stats
    from cloudqueue.cli import _watch
    from cloudqueue.store import MemoryStore

    scans: list[str] = []

    class Counting(MemoryStore):
        def scan(self, prefix: str, **options: Any) -> Any:
            scans.append(prefix)
            return super().scan(prefix, **options)

    app = cq.App("watched", backend="memory://", store=Counting())

    @app.job
    def part(payload: Ping) -> None: ...

    app.flow(part.message(Ping()), children=[part.message(Ping())])
    _watch(_stats.queues_of(app), 0.01, 4, True, app)
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["flows"]["counts"]["running"] for f in frames] == [1, 1, 1, 1]
    assert scans == ["watched/flow/"]  # once, not once a frame
    monkeypatch.setattr(_stats, "FLOWS_EVERY", 0.0)
    _watch(_stats.queues_of(app), 0.01, 3, True, app)
    assert len(scans) == 4  # and every frame when the interval allows it
    app.close()
