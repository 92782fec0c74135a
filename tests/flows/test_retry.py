"""A failed flow runs on once its failed jobs are sent again (``retry``, or redriving their
dead letters by hand), and a child that went to dead letters without running (poison) is
recorded in its flow."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.flows import FlowNotFound, Subflow

ROOT = Path(__file__).resolve().parents[2]


class Item(BaseModel):
    sku: str


class Order(BaseModel):
    order_id: str


def make_app(backend: str = "memory://", store: str = "memory://",
             child_attempts: int = 1) -> tuple[cq.App, set[str], list[Any]]:
    """An app whose ``reserve`` fails for the skus in ``out_of_stock`` and whose ``ship``
    fails while "ship" is in it."""
    app = cq.App("retryshop", backend=backend, store=store)
    out_of_stock: set[str] = set()
    shipped: list[Any] = []

    @app.job(retry=cq.Retry(attempts=child_attempts, backoff=cq.Backoff.fixed(timedelta(0))))
    def reserve(payload: Item) -> str:
        if payload.sku in out_of_stock:
            raise cq.Permanent(f"{payload.sku} is out of stock")
        return f"reserved {payload.sku}"

    @app.job(retry=cq.Retry(attempts=1))
    def pack(payload: Order, ctx: cq.JobContext) -> str:
        assert ctx.flow is not None
        return f"packed {len(ctx.flow.results)}"

    @app.job(retry=cq.Retry(attempts=1))
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        if "ship" in out_of_stock:
            raise cq.Permanent("the carrier is down")
        assert ctx.flow is not None
        shipped.append((payload.order_id, ctx.flow.results, [c.index for c in ctx.flow.failures]))

    return app, out_of_stock, shipped


def test_retry_redrives_the_failed_child_and_the_parent_then_runs_once() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.update({"b", "c"})
    flow_id = app.flow(ship.message(Order(order_id="o1")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b", "c")])
    app.drain()
    flow = app.get_flow(flow_id)
    assert flow.status == "failed" and flow.reason is not None and "child 1 (reserve" in flow.reason
    assert len(app.backend.dead_letters()) == 2

    out_of_stock.clear()  # the cause is fixed
    retried = app.retry_flow(flow_id)
    assert sorted(retried.redriven) == sorted([flow.children[1].job_id, flow.children[2].job_id])
    assert retried.resent == [] and retried.missing == []
    assert app.get_flow(flow_id).status == "failed"  # until the children ran again
    app.drain()
    assert shipped == [("o1", ["reserved a", "reserved b", "reserved c"], [])]
    flow = app.get_flow(flow_id)
    assert flow.status == "succeeded" and flow.reason is None
    assert [c.status for c in flow.children] == ["succeeded"] * 3
    assert app.backend.dead_letters() == []


def test_a_flow_that_has_not_failed_has_nothing_to_retry() -> None:
    app, _, _ = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    flow_id = app.flow(ship.message(Order(order_id="o2")), children=[reserve.message(Item(sku="a"))])
    with pytest.raises(cq.ConfigurationError, match=r"is running and none of its 1 pending children"):
        app.retry_flow(flow_id)
    app.drain()
    with pytest.raises(cq.ConfigurationError, match=r"is succeeded, not failed: nothing to retry"):
        app.retry_flow(flow_id)
    with pytest.raises(FlowNotFound):
        app.retry_flow("no-such-flow")


def test_redriving_the_dead_letter_by_hand_revives_the_flow_too() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.add("b")
    flow_id = app.flow(ship.message(Order(order_id="o3")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b")])
    app.drain()
    assert app.get_flow(flow_id).status == "failed"
    out_of_stock.clear()
    assert app.backend.redrive() == 1
    app.drain()
    assert shipped == [("o3", ["reserved a", "reserved b"], [])]
    assert app.get_flow(flow_id).status == "succeeded"


def test_one_of_two_failed_children_succeeding_keeps_the_flow_failed_naming_the_other() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.update({"b", "c"})
    flow_id = app.flow(ship.message(Order(order_id="o4")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b", "c")])
    app.drain()
    job_b = app.get_flow(flow_id).children[1].job_id
    out_of_stock.discard("b")
    letters = {letter.message_id: letter for letter in app.backend.dead_letters()}
    only_b = [mid for mid, letter in letters.items() if job_b.encode() in letter.body]
    assert app.backend.redrive(only_b) == 1
    app.drain()
    flow = app.get_flow(flow_id)
    assert flow.status == "failed" and shipped == []
    assert flow.reason is not None and flow.reason.startswith("child 2 (reserve")
    assert [c.status for c in flow.children] == ["succeeded", "succeeded", "failed"]


def test_a_failed_parent_is_redriven_or_sent_again_from_the_flow_when_its_dead_letter_is_gone() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.add("ship")
    flow_id = app.flow(ship.message(Order(order_id="o5")), children=[reserve.message(Item(sku="a"))])
    app.drain()
    flow = app.get_flow(flow_id)
    assert flow.status == "parent_failed" and "carrier is down" in (flow.reason or "")
    out_of_stock.clear()
    assert app.retry_flow(flow_id).redriven == [flow.parent_job_id]
    app.drain()
    assert shipped == [("o5", ["reserved a"], [])]
    assert app.get_flow(flow_id).status == "succeeded"

    out_of_stock.add("ship")  # once more, and this time its dead letter is purged
    flow_id = app.flow(ship.message(Order(order_id="o6")), children=[reserve.message(Item(sku="a"))])
    app.drain()
    assert app.backend.purge_dead_letters() == 1
    out_of_stock.clear()
    retried = app.retry_flow(flow_id)
    assert retried.redriven == [] and retried.resent == [app.get_flow(flow_id).parent_job_id]
    app.drain()
    assert shipped[-1] == ("o6", ["reserved a"], [])
    assert app.get_flow(flow_id).status == "succeeded"


def test_a_purged_child_is_reported_missing_and_the_flow_stays_failed() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.add("b")
    flow_id = app.flow(ship.message(Order(order_id="o7")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b")])
    app.drain()
    app.backend.purge_dead_letters()
    retried = app.retry_flow(flow_id)
    assert retried.missing == [app.get_flow(flow_id).children[1].job_id] and retried.redriven == []
    assert app.get_flow(flow_id).status == "failed" and shipped == []


def test_retrying_an_outer_flow_retries_its_failed_subflow() -> None:
    app, out_of_stock, shipped = make_app()
    reserve, pack, ship = app.get_job("reserve"), app.get_job("pack"), app.get_job("ship")
    out_of_stock.add("b")
    flow_id = app.flow(ship.message(Order(order_id="o8")), children=[
        Subflow(pack.message(Order(order_id="o8")), children=[reserve.message(Item(sku=s)) for s in "ab"]),
        reserve.message(Item(sku="c"))])
    app.drain()
    assert app.get_flow(flow_id).status == "failed"
    assert app.get_flow(f"{flow_id}.0").status == "failed"
    out_of_stock.clear()
    retried = app.retry_flow(flow_id)
    assert retried.redriven == [app.get_flow(f"{flow_id}.0").children[1].job_id]
    app.drain()
    assert app.get_flow(f"{flow_id}.0").status == "succeeded"
    assert shipped == [("o8", ["packed 2", "reserved c"], [])]
    assert app.get_flow(flow_id).status == "succeeded"


@pytest.mark.parametrize("policy", ["fail", "continue"])
def test_a_poison_child_that_never_ran_is_recorded_in_its_flow(policy: str) -> None:
    app, _, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    poison = dataclasses.replace(reserve.message(Item(sku="b")),
                                 body=reserve.message(Item(sku="b")).body.replace(b'"sku":"b"', b'"sku":7'))
    flow_id = app.flow(ship.message(Order(order_id="o9")), on_child_failure=policy,
                       children=[reserve.message(Item(sku="a")), poison])
    report = app.drain()
    assert report.dead_lettered == 1
    (letter,) = app.backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON
    flow = app.get_flow(flow_id)
    child = flow.children[1]
    assert child.status == "failed" and child.error is not None and "poison" in child.error
    assert "sku" in child.error  # the validation error names the field
    if policy == "fail":
        assert flow.status == "failed" and flow.reason is not None and "child 1 (reserve" in flow.reason
        assert shipped == []
    else:
        assert flow.status == "succeeded"
        assert shipped == [("o9", ["reserved a", None], [1])]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from cloudqueue.cli import main; main()", "flows", *args]
    return subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env,
                               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})


def test_flows_retry_command_on_sqs_and_dynamodb(request: pytest.FixtureRequest) -> None:
    """Another process retries the flow (``cloudqueue flows retry``): the child's dead letter
    goes back to the SQS queue, a worker runs it, and the parent runs once."""
    try:
        import boto3
        from cloudqueue_aws import ensure_queue
    except ImportError:
        from tests.conftest import missing_component

        missing_component("boto3 and cloudqueue-aws", 'pip install -e "adapters/aws[test]"')
    from tests.store.stores import dynamodb_endpoint, dynamodb_table

    endpoint = request.getfixturevalue("moto_server")
    store_endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(store_endpoint)}?region=us-east-1&endpoint_url={store_endpoint}"
    client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    pair = ensure_queue(f"flowretry-{uuid.uuid4().hex[:10]}", client=client,
                        visibility_timeout=timedelta(seconds=30))
    client.close()
    url = f"sqs://{pair.url.rsplit('/', 1)[-1]}?region=us-east-1&endpoint_url={endpoint}&wait=1"
    app, out_of_stock, shipped = make_app(backend=url, store=store)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    out_of_stock.add("b")
    flow_id = app.flow(ship.message(Order(order_id="o10")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b")])
    app.drain()
    assert app.get_flow(flow_id).status == "failed"
    env = {"CLOUDQUEUE_URL": url, "CLOUDQUEUE_STORE_URL": store}

    out_of_stock.clear()
    done = _cli("retry", "tests.flows.retry_app:app", flow_id, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"redriven: {app.get_flow(flow_id).children[1].job_id}",
                                        f"flow {flow_id}: 1 job(s) sent again"]
    again = _cli("retry", "tests.flows.retry_app:app", flow_id, env=env)
    assert again.returncode == 1 and "is failed" not in again.stderr
    assert "nothing to retry" not in again.stderr  # still failed: its child is back in the queue, not run yet
    assert "not in dead letters" in again.stderr

    app.drain()
    assert shipped == [("o10", ["reserved a", "reserved b"], [])]
    assert app.get_flow(flow_id).status == "succeeded"
    after = _cli("retry", "tests.flows.retry_app:app", flow_id, env=env)
    assert after.returncode == 1 and "is succeeded, not failed: nothing to retry" in after.stderr
    app.close()


def test_a_flow_too_large_for_its_store_is_refused_before_anything_is_sent() -> None:
    from cloudqueue.flows import FlowTooLarge
    from cloudqueue.store import MemoryStore

    app = cq.App("bigshop", backend="memory://", store=MemoryStore(max_document_size=4000))

    @app.job
    def reserve(payload: Item) -> str:
        return "x" * 3000 if payload.sku == "big" else "ok"

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None: ...

    with pytest.raises(FlowTooLarge, match=r"started with 40 children, its state would be \d+ bytes, over "
                                           r"the memory store's 4000 per document; .*Subflows"):
        app.flow(ship.message(Order(order_id="o1")), children=[reserve.message(Item(sku=f"s{i}")) for i in range(40)])
    assert app.backend.stats().waiting == 0


@pytest.mark.parametrize("policy", ["fail", "continue"])
def test_a_child_result_too_large_for_the_flow_fails_that_child(policy: str) -> None:
    from cloudqueue.store import MemoryStore

    app = cq.App("bigshop", backend="memory://", store=MemoryStore(max_document_size=4000))
    shipped: list[Any] = []

    @app.job
    def reserve(payload: Item) -> str:
        return "x" * 5000 if payload.sku == "big" else f"reserved {payload.sku}"

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        shipped.append((ctx.flow.results, [c.index for c in ctx.flow.failures]))

    flow_id = app.flow(ship.message(Order(order_id="o1")), on_child_failure=policy,
                       children=[reserve.message(Item(sku="a")), reserve.message(Item(sku="big"))])
    report = app.drain()
    assert report.dead_lettered == 1
    (letter,) = app.backend.dead_letters()
    assert letter.kind is cq.ReasonKind.PERMANENT and "its result does not fit in its flow" in letter.reason
    flow = app.get_flow(flow_id)
    assert flow.children[1].status == "failed"
    assert "return a key to the data" in (flow.children[1].error or "")
    if policy == "fail":
        assert flow.status == "failed" and shipped == []
    else:
        assert flow.status == "succeeded" and shipped == [(["reserved a", None], [1])]


class RefuseParentOnce(cq.Middleware):
    """The queue refuses the first send of a ``ship`` (the parent), noting it in ``refused``."""

    def __init__(self, refused: list[str]) -> None:
        self.refused = refused

    def enqueue(self, messages: Any, call_next: Any) -> Any:
        if any(m.job_type == "ship" for m in messages) and not self.refused:
            self.refused.append("ship")
            raise cq.BackendError("the queue is unreachable")
        return call_next(messages)


def test_a_parent_whose_send_failed_is_sent_by_the_retried_child_and_runs_once() -> None:
    """The queue refuses the parent's send once: the last child's delivery is not
    acknowledged but retried, and its retry sends the parent."""
    app, _, shipped = make_app(child_attempts=3)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    refused: list[str] = []
    app.add_middleware(RefuseParentOnce(refused))
    flow_id = app.flow(ship.message(Order(order_id="o11")), children=[reserve.message(Item(sku="a"))])
    report = app.drain()
    assert refused == ["ship"]
    assert report.retried == 1 and report.dead_lettered == 0
    assert shipped == [("o11", ["reserved a"], [])]
    assert app.get_flow(flow_id).status == "succeeded"


def test_retry_redrives_a_running_flows_child_the_queue_moved_to_dead_letters_itself() -> None:
    """A child moved to dead letters without a consumer seeing it (SQS's own redrive
    policy) leaves its flow running; retry finds it there and sends it back."""
    app, _, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    flow_id = app.flow(ship.message(Order(order_id="o12")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b")])
    # the queue moves child 1 to dead letters on its own, as a redrive policy does
    backend = app.backend
    (first,) = backend.receive(1)
    while b'"sku":"b"' not in first.body:
        backend.release(first)
        (first,) = backend.receive(1)
    backend.dead_letter(first, cq.Reason(cq.ReasonKind.EXHAUSTED, "maxReceiveCount 1 reached"))
    app.drain()
    assert app.get_flow(flow_id).status == "running" and shipped == []
    retried = app.retry_flow(flow_id)
    assert retried.redriven == [app.get_flow(flow_id).children[1].job_id]
    app.drain()
    assert shipped == [("o12", ["reserved a", "reserved b"], [])]
    with pytest.raises(cq.ConfigurationError, match="is succeeded, not failed: nothing to retry"):
        app.retry_flow(flow_id)

    flow_id = app.flow(ship.message(Order(order_id="o13")), children=[reserve.message(Item(sku="c"))])
    with pytest.raises(cq.ConfigurationError, match=r"is running and none of its 1 pending children is in "
                                                    r"dead letters: nothing to retry"):
        app.retry_flow(flow_id)


def test_a_flow_left_ready_by_a_failed_parent_send_after_a_poison_child_gets_its_parent_from_retry() -> None:
    """The last child is poison (recorded as it goes to dead letters), and the queue
    refuses the parent's send then: no delivery is left to retry it, so the flow stays
    ready until retry sends the parent."""
    app, _, shipped = make_app()
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    refused: list[str] = []
    poison = reserve.message(Item(sku="b"))
    poison = dataclasses.replace(poison, body=poison.body.replace(b'"sku":"b"', b'"sku":7'))
    flow_id = app.flow(ship.message(Order(order_id="o14")), on_child_failure="continue",
                       children=[reserve.message(Item(sku="a")), poison])
    app.add_middleware(RefuseParentOnce(refused))
    app.drain()
    assert refused == ["ship"] and shipped == []
    assert app.get_flow(flow_id).status == "ready"
    retried = app.retry_flow(flow_id)
    assert retried.resent == [app.get_flow(flow_id).parent_job_id] and retried.redriven == []
    app.drain()
    assert shipped == [("o14", ["reserved a", None], [1])]
    assert app.get_flow(flow_id).status == "succeeded"
