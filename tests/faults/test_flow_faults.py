"""Flow guarantees under faults: worker processes on moto's SQS with the store in moto's
DynamoDB, a worker SIGKILLed while children run, and the store's endpoint cut while
children finish. Every flow's parent runs exactly once, after all its children, with all
their results; lost and overlapping runs are 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cloudqueue as cq
from tests.faults.test_worker_faults import CLI, ROOT, Fleet, _dead_lettered

pytestmark = pytest.mark.slow

FLOWS = 3
CHILDREN = 4


class FlowFleet(Fleet):
    """Worker processes of tests.faults.flow_app, with their store."""

    def __init__(self, url: str, store: str, tmp: Path) -> None:
        super().__init__(url, tmp / "runs.log", tmp)
        self.store, self.parents = store, tmp / "parents.log"

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CLOUDQUEUE_URL": self.url, "CLOUDQUEUE_STORE_URL": self.store,
               "CQ_FAULT_RUNS": str(self.runs), "CQ_FAULT_PARENTS": str(self.parents), "PYTHONPATH": str(ROOT)}
        with (self.logs / f"worker-{len(self.procs)}.log").open("wb") as out:
            proc = subprocess.Popen([str(CLI), "-v", "worker", "tests.faults.flow_app:app", *args],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def parent_runs(self) -> list[dict[str, Any]]:
        if not self.parents.exists():
            return []
        return [json.loads(line) for line in self.parents.read_text().splitlines()]

    def stop(self, timeout: float = 60) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a worker did not stop in {timeout}s:\n{self.worker_logs()}") from None


@pytest.fixture
def flow_fleet(make_queue: Any, moto_server: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    from tests.store.stores import dynamodb_table

    fleets: list[FlowFleet] = []

    def make(visibility: timedelta, store_endpoint: str = moto_server) -> tuple[FlowFleet, cq.App, Any]:
        pair = make_queue(prefix="flowfaults", visibility_timeout=visibility)
        url = f"sqs://{pair.url.rsplit('/', 1)[-1]}?endpoint_url={moto_server}&region=us-east-1&wait=1"
        table = dynamodb_table(moto_server)
        workers_store = f"dynamodb://{table}?region=us-east-1&endpoint_url={store_endpoint}"
        one = FlowFleet(url, workers_store, tmp_path)
        fleets.append(one)
        from tests.faults import flow_app

        producer = cq.App("flowfaults", backend=url,
                          store=f"dynamodb://{table}?region=us-east-1&endpoint_url={moto_server}")
        for job in flow_app.app.jobs.values():
            producer.job(job.func, name=job.name)
        return one, producer, pair

    yield make
    for one in fleets:
        one.stop_all()


def _start_flows(producer: cq.App, seconds: float) -> tuple[list[str], set[str]]:
    from tests.faults.flow_app import Assemble, Part

    part, assemble = producer.get_job("part"), producer.get_job("assemble")
    flow_ids = [producer.flow(assemble.message(Assemble(flow=f"f{i}")), flow_id=f"f{i}",
                              children=[part.message(Part(flow=f"f{i}", n=n, seconds=seconds))
                                        for n in range(CHILDREN)])
                for i in range(FLOWS)]
    job_ids = {c.job_id for f in flow_ids for c in producer.get_flow(f).children}
    job_ids |= {producer.get_flow(f).parent_job_id for f in flow_ids}
    return flow_ids, job_ids


def _check(one: FlowFleet, producer: cq.App, flow_ids: list[str], job_ids: set[str], sqs: Any,
           dead_letter_url: str) -> None:
    counts = one.count(len(job_ids), _dead_lettered(sqs, dead_letter_url))
    parents = one.parent_runs()
    print(counts.row(), f"flows {len(flow_ids)}, parent runs {len(parents)}")
    assert counts.completed == job_ids and counts.lost == 0 and counts.overlapping == 0, counts.row()
    assert sorted(p["flow"] for p in parents) == sorted(flow_ids), "each parent ran exactly once"
    assert all(p["results"] == list(range(CHILDREN)) for p in parents), parents
    assert [producer.get_flow(f).status for f in flow_ids] == ["succeeded"] * FLOWS


def test_sigkill_while_children_run_then_every_parent_runs_once_with_all_results(
        flow_fleet: Any, sqs: Any) -> None:
    one, producer, pair = flow_fleet(timedelta(seconds=3))
    flow_ids, job_ids = _start_flows(producer, seconds=1.0)
    first = one.start("-c", "2")
    one.wait_for(lambda events: sum(e[0] == "start" for e in events) >= 3, timeout=60)
    one.kill(first)  # two children die mid-run, holding their store claims
    one.start("-c", "2")
    one.start("-c", "2")
    one.wait_for(lambda events: len(one.parent_runs()) >= FLOWS
                 and {e[1] for e in events if e[0] == "end"} >= job_ids, timeout=120)
    time.sleep(2)  # a second parent run, were there one, would start by now
    one.stop()
    _check(one, producer, flow_ids, job_ids, sqs, pair.dead_letter_url)


def test_store_endpoint_cut_while_children_finish_then_every_parent_runs_once(
        flow_fleet: Any, sqs: Any, moto_server: str) -> None:
    from tests.faults.proxy import FaultProxy

    with FaultProxy.for_url(moto_server) as proxy:
        one, producer, pair = flow_fleet(timedelta(seconds=10), store_endpoint=proxy.url)
        flow_ids, job_ids = _start_flows(producer, seconds=0.5)
        one.start("-c", "2")
        one.start("-c", "2")
        one.wait_for(lambda events: sum(e[0] == "end" for e in events) >= 2, timeout=60)
        proxy.drop_new_connections(close_open=True)  # children finish, their flow writes fail
        time.sleep(4)
        cut = proxy.cut
        proxy.pass_traffic()
        one.wait_for(lambda events: len(one.parent_runs()) >= FLOWS
                     and {e[1] for e in events if e[0] == "end"} >= job_ids, timeout=180)
        time.sleep(2)
        one.stop()
        print(f"store connections cut: {cut}")
        assert cut > 0, "the cut hit no store call"
        _check(one, producer, flow_ids, job_ids, sqs, pair.dead_letter_url)
