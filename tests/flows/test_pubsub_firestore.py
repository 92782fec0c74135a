"""Flows on Google's Pub/Sub emulator with the store on the Firestore emulator: children
finishing together in several worker processes, a dead-lettered child under each policy, a
parent delivered twice, a chunked child killed mid-chunk, and flows run by the push shims
(the HTTP handler and the CloudEvent handler in functions-framework)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.conftest import missing_component
from tests.gcp import routing
from tests.gcp.conftest import make_pubsub
from tests.store.stores import store_url

from . import chunk_worker, fleet

pytestmark = pytest.mark.timeout(300)

CHILDREN = 12
PROCESSES = 4
ROOT = Path(__file__).resolve().parents[2]


class Part(BaseModel):
    n: int


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """A store URL on a fresh Firestore collection (after checking the Google adapter is there)."""
    try:
        import cloudqueue_gcp  # noqa: F401
        from google.cloud import pubsub_v1  # noqa: F401
    except ImportError:
        missing_component("google-cloud-pubsub and cloudqueue-gcp", 'pip install -e "adapters/gcp[test]"')
    return store_url("firestore", request)


def wait_for(condition: Callable[[], bool], timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


def flow_status(app: cq.App, flow_id: str) -> str:
    return app.get_flow(flow_id).status


class Settled(cq.Middleware):
    """Records the outcome of every delivery of ``job_type`` settled in this process."""

    def __init__(self, job_type: str) -> None:
        self.job_type = job_type
        self.outcomes: list[str] = []

    def settled(self, result: Any) -> None:
        if result.job_type == self.job_type:
            self.outcomes.append(result.outcome.value)


class Sent(cq.Middleware):
    """Records every message of ``job_type`` this app sends."""

    def __init__(self, job_type: str) -> None:
        self.job_type = job_type
        self.messages: list[cq.OutgoingMessage] = []

    def enqueue(self, messages: Any, call_next: Any) -> list[str]:
        self.messages.extend(m for m in messages if m.job_type == self.job_type)
        result: list[str] = call_next(messages)
        return result


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; any still running at its end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def spawn(processes: list[subprocess.Popen[bytes]], *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "tests.flows.pubsub_worker", *args], cwd=ROOT, env=env)
    processes.append(process)
    return process


def test_children_finishing_together_in_several_processes_send_and_run_the_parent_once(
        emulator: Any, project: str, store: str, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    # A worker pulls more than it runs at once and gives back what it did not start, which
    # Pub/Sub counts as a delivery: room for that before the dead-letter policy applies.
    pubsub = make_pubsub(emulator.host, project, max_delivery_attempts=20)
    app = fleet.add_jobs(cq.App("fleet", backend=pubsub.url(), store=store), tmp_path, CHILDREN)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    flow_id = app.flow(ship.message(fleet.Order(order_id="o-1")),
                       children=[reserve.message(fleet.Item(sku=f"s{i:02}")) for i in range(CHILDREN)])
    for _ in range(PROCESSES):
        spawn(processes, "fleet", pubsub.url(), store, str(tmp_path), str(CHILDREN), str(CHILDREN // PROCESSES))
    try:
        assert wait_for(lambda: flow_status(app, flow_id) == "succeeded", timeout=180), \
            f"the flow is {app.get_flow(flow_id).status}"
    finally:
        (tmp_path / "stop").touch()
    assert [p.wait(timeout=90) for p in processes] == [0] * PROCESSES
    assert len(list(tmp_path.glob("running-*"))) == CHILDREN
    sends = [line for f in tmp_path.glob("sent-*") for line in f.read_text().splitlines()]
    assert sends == ["ship"], "exactly one process sends the parent"
    results = [f"reserved s{i:02}" for i in range(CHILDREN)]
    assert (tmp_path / "shipped").read_text().splitlines() == ["o-1 " + "|".join(results)]
    flow = app.get_flow(flow_id)
    assert flow.results == results and flow.failures == []
    app.close()


@pytest.mark.parametrize(("policy", "failure", "shipped", "status"), [
    ("fail", "permanent", [], "failed"),
    ("ignore", "permanent", ["o-2 reserved b"], "succeeded"),
    ("continue", "permanent", ["o-2 failed:0 None|reserved b"], "succeeded"),
    ("continue", "exhausted", ["o-2 failed:0 None|reserved b"], "succeeded"),
    ("fail", "poison", [], "failed"),
])
def test_a_dead_lettered_child_under_each_policy(emulator: Any, project: str, store: str, policy: str,
                                                 failure: str, shipped: list[str], status: str) -> None:
    from cloudqueue.backends import from_url

    pubsub = make_pubsub(emulator.host, project)
    app = cq.App("policies", backend=pubsub.url(), store=store)
    ran: list[str] = []
    sent, settled = Sent("ship"), Settled("ship")
    app.add_middleware(sent)
    app.add_middleware(settled)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def reserve(payload: fleet.Item) -> str:
        if payload.sku == "a":  # at once, or after its last attempt (Pub/Sub counts the deliveries)
            raise cq.Permanent("a is out of stock") if failure == "permanent" else RuntimeError("a is out of stock")
        return f"reserved {payload.sku}"

    @app.job
    def ship(payload: fleet.Order, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        failed = [f"failed:{c.index}" for c in ctx.flow.failures]
        ran.append(" ".join([payload.order_id, *failed, "|".join(map(str, ctx.flow.results))]))

    first = reserve.message(fleet.Item(sku="a"))
    if failure == "poison":  # a payload that no longer validates: refused before it runs
        first = dataclasses.replace(first, body=first.body.replace(b'"sku":"a"', b'"sku":7'))
    flow_id = app.flow(ship.message(fleet.Order(order_id="o-2")), on_child_failure=policy,
                       children=[first, reserve.message(fleet.Item(sku="b"))])
    dead_lettered = 0

    def drained() -> bool:
        nonlocal dead_lettered
        dead_lettered += app.drain().dead_lettered
        return flow_status(app, flow_id) in ("failed", "succeeded")

    assert wait_for(drained)
    assert ran == shipped
    assert dead_lettered == 1
    flow = app.get_flow(flow_id)
    assert flow.status == status
    assert flow.children[0].status == "failed"
    assert (flow.children[0].error or "").startswith(f"{failure}: ")
    assert ("sku" if failure == "poison" else "a is out of stock") in (flow.children[0].error or "")
    if policy == "fail":
        assert flow.reason is not None and flow.reason.startswith("child 0 (reserve ")
        assert failure in flow.reason
        assert sent.messages == []
    else:
        assert flow.reason is None
        # the parent's message delivered again (a second producer publishes the same
        # message): the store's guard acknowledges it unrun
        assert len(sent.messages) == 1 and settled.outcomes == ["ack"]
        from_url(pubsub.url()).send([sent.messages[0]])
        assert wait_for(lambda: app.drain().processed >= 0 and settled.outcomes == ["ack", "skip"], timeout=30)
        assert ran == shipped
    assert wait_for(lambda: len(app.backend.dead_letters()) == 1, timeout=30)
    letters = app.backend.dead_letters()
    sku = b'"sku":7' if failure == "poison" else b'"sku":"a"'
    assert [(sku in letter.body, letter.reason.split(":")[0]) for letter in letters] == [(True, failure)]
    app.close()


def test_flows_retry_sends_back_a_failed_child_and_one_pubsub_dead_lettered_itself(
        emulator: Any, project: str, store: str) -> None:
    pubsub = make_pubsub(emulator.host, project, max_delivery_attempts=5)
    app = cq.App("retried", backend=pubsub.url(), store=store)
    out_of_stock = {"a"}
    shipped: list[tuple[str, list[Any]]] = []

    @app.job
    def reserve(payload: fleet.Item) -> str:
        if payload.sku in out_of_stock:
            raise cq.Permanent(f"{payload.sku} is out of stock")
        return f"reserved {payload.sku}"

    @app.job
    def ship(payload: fleet.Order, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        shipped.append((payload.order_id, ctx.flow.results))

    def drained_to(flow_id: str, status: str) -> bool:
        app.drain()
        return flow_status(app, flow_id) == status

    # a child dead-lettered under "fail", its cause fixed, then the flow retried
    flow_id = app.flow(ship.message(fleet.Order(order_id="o-3")),
                       children=[reserve.message(fleet.Item(sku=s)) for s in ("a", "b")])
    assert wait_for(lambda: drained_to(flow_id, "failed"))
    out_of_stock.clear()
    assert app.retry_flow(flow_id).redriven == [app.get_flow(flow_id).children[0].job_id]
    assert wait_for(lambda: drained_to(flow_id, "succeeded"))
    assert shipped == [("o-3", ["reserved a", "reserved b"])]

    # a child the subscription's dead-letter policy moved on its own (no consumer ran it):
    # the flow cannot know, and stays running until it is retried
    flow_id = app.flow(ship.message(fleet.Order(order_id="o-4")), children=[reserve.message(fleet.Item(sku="c"))])
    backend = app.backend
    nacks = 0
    deadline = time.monotonic() + 60
    while nacks < 5 and time.monotonic() < deadline:
        for delivery in backend.receive(max_messages=1, wait=timedelta(seconds=2)):
            backend.release(delivery)
            nacks += 1
    assert nacks == 5
    assert backend.receive(max_messages=1, wait=timedelta(seconds=1)) == []  # the emulator moves it on a pull
    assert wait_for(lambda: len(backend.dead_letters()) == 1, timeout=30)
    [letter] = backend.dead_letters()
    assert letter.reason.startswith("exhausted: Pub/Sub gave up after 5 deliveries")
    assert flow_status(app, flow_id) == "running"
    assert app.retry_flow(flow_id).redriven == [app.get_flow(flow_id).children[0].job_id]
    assert wait_for(lambda: drained_to(flow_id, "succeeded"))
    assert shipped[1:] == [("o-4", ["reserved c"])]
    assert backend.dead_letters() == []
    app.close()


def test_a_chunked_flow_child_killed_mid_chunk_resumes_in_another_process(
        emulator: Any, project: str, store: str, tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    from cloudqueue import chunks

    pubsub = make_pubsub(emulator.host, project, ack_deadline=10)
    app = chunk_worker.add_jobs(cq.App("chunky", backend=pubsub.url(), store=store), tmp_path)
    scan, report = app.get_job("scan"), app.get_job("report")
    flow_id = app.flow(report.message(chunk_worker.Scan()), children=[scan.message(chunk_worker.Scan())])
    root = f"cqflow-{flow_id}-0"  # the child's idempotency key names its chunked run
    first = spawn(processes, "chunks", pubsub.url(), store, str(tmp_path))
    assert wait_for(lambda: (tmp_path / "stalled").exists() or first.poll() is not None, timeout=120)
    assert (tmp_path / "stalled").exists()
    first.kill()  # SIGKILL mid-chunk: nothing settles, Pub/Sub delivers it again after its ack deadline
    first.wait(timeout=30)
    done = chunks.progress(app, root)
    assert done is not None and (done.chunks, done.progress, done.finished) == (2, 6, False)
    flow = app.get_flow(flow_id)
    assert (flow.status, flow.children[0].status) == ("running", "pending")  # a chunk is not the child's end

    (tmp_path / "go").touch()
    second = spawn(processes, "chunks", pubsub.url(), store, str(tmp_path))
    try:
        assert wait_for(lambda: flow_status(app, flow_id) == "succeeded", timeout=120), \
            f"the flow is {app.get_flow(flow_id).status}"
    finally:
        (tmp_path / "stop").touch()
    assert second.wait(timeout=90) == 0
    runs = (tmp_path / "runs").read_text().splitlines()
    assert runs == ["0 0", "1 3", "2 6", "2 6", "3 9"]  # chunk 2 again (it never finished), none skipped
    done = chunks.progress(app, root)
    assert done is not None and (done.chunks, done.progress, done.finished) == (4, 12, True)
    # the last chunk finished the child: its return value is the flow's result
    assert (tmp_path / "reported").read_text().splitlines() == ["[12]"]
    assert app.get_flow(flow_id).results == [12]
    app.close()


def _squares_app(backend: str, store: str, *, parent_fails_once: bool = False
                 ) -> tuple[cq.App, list[int], Sent, Settled]:
    app = cq.App("pushflow", backend=backend, store=store)
    totals: list[int] = []
    sent, settled = Sent("total"), Settled("total")
    app.add_middleware(sent)
    app.add_middleware(settled)

    @app.job
    def square(payload: Part) -> int:
        if payload.n < 0:
            raise cq.Permanent("negative")
        return payload.n * payload.n

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def total(payload: Part, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        if parent_fails_once and ctx.attempt == 1:
            raise RuntimeError("the warehouse is not answering")
        totals.append(sum(r for r in ctx.flow.results if r is not None) + 1000 * len(ctx.flow.failures))

    return app, totals, sent, settled


@pytest.mark.parametrize("shim", ["http", "cloudevent"])
def test_a_flow_pushed_by_the_emulator_through_each_push_shim(
        request: pytest.FixtureRequest, emulator: Any, project: str, store: str, shim: str) -> None:
    import cloudqueue_gcp

    from cloudqueue.backends import from_url

    function = request.getfixturevalue(f"{shim}_function")
    pubsub = make_pubsub(emulator.host, project, push_endpoint=function.url)
    app, totals, sent, settled = _squares_app(pubsub.url(), store)
    if shim == "http":  # the emulator sends no OIDC token
        routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    else:
        routing.set_cloudevent(cloudqueue_gcp.cloudevent_handler(app, verify=False))
    square, total = app.get_job("square"), app.get_job("total")
    poison = square.message(Part(n=5))
    poison = dataclasses.replace(poison, body=poison.body.replace(b'"n":5', b'"n":"five"'))
    flow_id = app.flow(total.message(Part(n=0)), on_child_failure="continue",
                       children=[*(square.message(Part(n=n)) for n in (1, 2, 3, -1)), poison])
    assert wait_for(lambda: flow_status(app, flow_id) == "succeeded", timeout=90), \
        f"the flow is {app.get_flow(flow_id).status}"
    assert totals == [2014]
    flow = app.get_flow(flow_id)
    assert flow.results == [1, 4, 9, None, None]
    assert [(c.index, (c.error or "").split(":")[0]) for c in flow.failures] == [(3, "permanent"), (4, "poison")]
    assert len(sent.messages) == 1 and settled.outcomes.count("ack") == 1
    # the parent's message pushed again: acknowledged, not run (a push the emulator repeats
    # on its own, after an ack deadline a loaded machine overran, is skipped alike)
    from_url(pubsub.url()).send([sent.messages[0]])
    assert wait_for(lambda: "skip" in settled.outcomes, timeout=60), settled.outcomes
    assert totals == [2014] and settled.outcomes.count("ack") == 1
    app.close()


def test_a_flow_on_cloud_tasks_through_the_http_shim(
        store: str, project: str, tasks_server: Any, http_function: Any, issuer: Any) -> None:
    import urllib.request

    import cloudqueue_gcp

    from tests.gcp.conftest import make_queues

    queues = make_queues(tasks_server, project)
    app, totals, sent, settled = _squares_app(queues.url(http_function.url), store, parent_fails_once=True)
    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))
    square, total = app.get_job("square"), app.get_job("total")
    flow_id = app.flow(total.message(Part(n=0)), on_child_failure="continue",
                       children=[square.message(Part(n=n)) for n in (1, 2, 3, -1)])
    # the children, then (created while they ran) the parent, whose first attempt fails
    assert tasks_server.dispatch_due() == [200] * 4 + [500]
    assert totals == [] and flow_status(app, flow_id) == "parent_enqueued"
    retried: list[int] = []
    assert wait_for(lambda: bool(retried.extend(tasks_server.dispatch_due()) or retried), timeout=60)
    assert retried == [200]  # after the queue's backoff: its second attempt runs it
    assert totals == [1014]
    flow = app.get_flow(flow_id)
    assert flow.status == "succeeded" and flow.results == [1, 4, 9, None]
    assert [(c.index, (c.error or "").split(":")[0]) for c in flow.failures] == [(3, "permanent")]
    [letter] = app.backend.dead_letters()
    assert b'"n":-1' in letter.body and letter.reason.startswith("permanent: negative")
    # Cloud Tasks dispatches a task more than once now and then: the same request again
    assert len(sent.messages) == 1 and settled.outcomes == ["retry", "ack"]
    parent_headers = tasks_server.requests[-1]
    again = urllib.request.Request(http_function.url, data=sent.messages[0].body, headers=parent_headers,
                                   method="POST")
    with urllib.request.urlopen(again, timeout=30) as answer:
        assert answer.status == 200
    assert settled.outcomes == ["retry", "ack", "skip"] and totals == [1014]
    app.close()


def test_a_chunked_flow_child_on_cloud_tasks_runs_each_chunk_once(
        store: str, project: str, tasks_server: Any, http_function: Any, issuer: Any, tmp_path: Path) -> None:
    import urllib.request

    import cloudqueue_gcp
    from cloudqueue_gcp.tasks import task_id_for_key

    from cloudqueue import chunks
    from tests.gcp.conftest import make_queues

    (tmp_path / "go").touch()  # no chunk stalls
    queues = make_queues(tasks_server, project)
    app = chunk_worker.add_jobs(cq.App("chunky", backend=queues.url(http_function.url), store=store), tmp_path)
    sent = Sent("scan")
    app.add_middleware(sent)
    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))
    scan, report = app.get_job("scan"), app.get_job("report")
    flow_id = app.flow(report.message(chunk_worker.Scan()), children=[scan.message(chunk_worker.Scan())])
    assert tasks_server.dispatch_due() == [200] * 5  # four chunks, each sending the next, then the parent
    assert app.get_flow(flow_id).status == "succeeded"
    # chunk 1's task dispatched a second time: acknowledged, not run
    [chunk_1] = [m for m in sent.messages if m.idempotency_key == f"cqchunk-cqflow-{flow_id}-0-1"]
    headers = next(h for h in tasks_server.requests if h["X-CloudTasks-TaskName"] ==
                   task_id_for_key(chunk_1.idempotency_key or ""))
    again = urllib.request.Request(http_function.url, data=chunk_1.body, headers=headers, method="POST")
    with urllib.request.urlopen(again, timeout=30) as answer:
        assert answer.status == 200
    assert (tmp_path / "runs").read_text().splitlines() == ["0 0", "1 3", "2 6", "3 9"]
    assert (tmp_path / "reported").read_text().splitlines() == ["[12]"]
    done = chunks.progress(app, f"cqflow-{flow_id}-0")
    assert done is not None and (done.chunks, done.progress, done.finished) == (4, 12, True)
    app.close()
