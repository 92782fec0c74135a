"""Flows on SQS (moto server) with a DynamoDB store: children finishing at the same moment
in several processes send the parent exactly once, and it runs once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cloudqueue as cq
from tests.store.stores import dynamodb_endpoint, dynamodb_table

from .fleet import Item, Order, make_app

CHILDREN = 12
PROCESSES = 4


@pytest.fixture
def sqs(request: pytest.FixtureRequest) -> Any:
    try:
        import boto3
    except ImportError:
        from tests.conftest import missing_component

        missing_component("boto3 and cloudqueue-aws", 'pip install -e "adapters/aws[test]"')
    client = boto3.client("sqs", endpoint_url=request.getfixturevalue("moto_server"), region_name="us-east-1")
    yield client
    client.close()


def test_children_finishing_together_in_several_processes_send_the_parent_once(
        request: pytest.FixtureRequest, sqs: Any, tmp_path: Path) -> None:
    from cloudqueue_aws import ensure_queue

    store_endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(store_endpoint)}?region=us-east-1&endpoint_url={store_endpoint}"
    sqs_endpoint = request.getfixturevalue("moto_server")
    pair = ensure_queue(f"flows-{uuid.uuid4().hex[:10]}", client=sqs, visibility_timeout=timedelta(seconds=30))
    app = make_app(pair.url, sqs_endpoint, store, tmp_path, CHILDREN)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    flow_id = app.flow(ship.message(Order(order_id="o-1")),
                       children=[reserve.message(Item(sku=f"s{i:02}")) for i in range(CHILDREN)])

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    fleet = [subprocess.Popen([sys.executable, "-m", "tests.flows.fleet", pair.url, sqs_endpoint, store,
                               str(tmp_path), str(CHILDREN), str(CHILDREN // PROCESSES)], cwd=root, env=env)
             for _ in range(PROCESSES)]
    try:
        codes = [p.wait(timeout=240) for p in fleet]
    finally:
        for p in fleet:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert codes == [0] * PROCESSES
    assert len(list(tmp_path.glob("running-*"))) == CHILDREN
    sends = [line for f in tmp_path.glob("sent-*") for line in f.read_text().splitlines()]
    assert sends == ["ship"], "exactly one process sends the parent"
    flow = app.get_flow(flow_id)
    assert flow.status in ("parent_enqueued", "succeeded")
    assert flow.results == [f"reserved s{i:02}" for i in range(CHILDREN)]

    # whichever consumer is left runs the parent; a copy of it delivered again is skipped
    app.worker(concurrency=2, poll_wait=timedelta(seconds=0.5), handle_signals=False).run(until_empty=True)
    shipped = (tmp_path / "shipped").read_text().splitlines()
    assert shipped == ["o-1 " + "|".join(f"reserved s{i:02}" for i in range(CHILDREN))]
    assert app.get_flow(flow_id).status == "succeeded"
    app.close()
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)


@pytest.mark.parametrize(("policy", "shipped", "status"), [
    ("fail", [], "failed"),
    ("ignore", ["o-2 reserved b"], "succeeded"),
    ("continue", ["o-2 failed:0 reserved b"], "succeeded"),
])
def test_a_dead_lettered_child_under_each_policy(request: pytest.FixtureRequest, sqs: Any, policy: str,
                                                 shipped: list[str], status: str) -> None:
    from cloudqueue_aws import SQSBackend, ensure_queue

    store_endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(store_endpoint)}?region=us-east-1&endpoint_url={store_endpoint}"
    pair = ensure_queue(f"flows-p-{uuid.uuid4().hex[:10]}", client=sqs)
    app = cq.App("policies", backend=SQSBackend(pair.url, client=sqs), store=store)
    ran: list[str] = []
    sent: list[Any] = []

    class Sent(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            sent.extend(m for m in messages if m.job_type == "ship")
            return call_next(messages)

    app.add_middleware(Sent())

    @app.job
    def reserve(payload: Item) -> str:
        if payload.sku == "a":
            raise cq.Permanent("a is out of stock")
        return f"reserved {payload.sku}"

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        failed = [f"failed:{c.index}" for c in ctx.flow.failures]
        ran.append(" ".join([payload.order_id, *failed, *(r for r in ctx.flow.results if r is not None)]))

    flow_id = app.flow(ship.message(Order(order_id="o-2")), on_child_failure=policy,
                       children=[reserve.message(Item(sku="a")), reserve.message(Item(sku="b"))])
    report = app.drain()
    assert ran == shipped
    assert report.dead_lettered == 1
    flow = app.get_flow(flow_id)
    assert flow.status == status
    assert flow.children[0].status == "failed" and "a is out of stock" in (flow.children[0].error or "")
    if policy == "fail":
        assert flow.reason is not None and flow.reason.startswith("child 0 (reserve ")
        assert sent == []
    else:
        # the queue delivers the parent again: the store's guard acknowledges it unrun
        assert len(sent) == 1
        SQSBackend(pair.url, client=sqs).send([sent[0]])  # a second producer: no send-side dedup
        again = app.drain()
        assert again.skipped == 1 and ran == shipped
    dead = sqs.receive_message(QueueUrl=pair.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert [b'"sku":"a"' in m["Body"].encode() for m in dead.get("Messages", [])] == [True]
    app.close()
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)


def test_a_chunked_job_killed_mid_way_resumes_at_its_chunk(request: pytest.FixtureRequest, sqs: Any,
                                                           tmp_path: Path) -> None:
    import time

    from cloudqueue_aws import ensure_queue

    from cloudqueue import chunks

    from . import chunk_worker

    store_endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(store_endpoint)}?region=us-east-1&endpoint_url={store_endpoint}"
    sqs_endpoint = request.getfixturevalue("moto_server")
    pair = ensure_queue(f"chunks-{uuid.uuid4().hex[:10]}", client=sqs, visibility_timeout=timedelta(seconds=2))
    app = chunk_worker.make_app(pair.url, sqs_endpoint, store, tmp_path)
    root = app.get_job("scan").enqueue(chunk_worker.Scan())
    root_dir = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root_dir), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tests.flows.chunk_worker", pair.url, sqs_endpoint, store, str(tmp_path)]
    first = subprocess.Popen(command, cwd=root_dir, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "stalled").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert (tmp_path / "stalled").exists()
        first.kill()  # SIGKILL mid-chunk: nothing settles, the message comes back after its visibility
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    done = chunks.progress(app, root)
    assert done is not None and (done.chunks, done.progress, done.finished) == (2, 6, False)

    (tmp_path / "go").touch()
    second = subprocess.run(command, cwd=root_dir, env=env, timeout=240, check=False)
    assert second.returncode == 0
    runs = (tmp_path / "runs").read_text().splitlines()
    assert runs == ["0 0", "1 3", "2 6", "2 6", "3 9"]  # chunk 2 again (it never finished), none skipped
    done = chunks.progress(app, root)
    assert done is not None and (done.chunks, done.progress, done.finished) == (4, 12, True)
    app.close()
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
