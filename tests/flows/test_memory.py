"""Flows on the memory backend and store: a parent runs once, after its children."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import Delivery
from cloudqueue.flows import FlowNotFound, FlowStep


class Item(BaseModel):
    sku: str
    fail: bool = False


class Order(BaseModel):
    order_id: str


def make_app(**options: Any) -> tuple[cq.App, list[Any], Any, Any]:
    app = cq.App("shop", backend="memory://", store="memory://", **options)
    seen: list[Any] = []

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(cq_zero())))
    def reserve(payload: Item) -> dict[str, str]:
        if payload.fail:
            raise cq.Permanent(f"{payload.sku} is out of stock")
        return {"reserved": payload.sku}

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        flow = ctx.flow
        assert flow is not None
        seen.append((payload.order_id, flow.results, [c.index for c in flow.failures]))

    return app, seen, reserve, ship


def cq_zero() -> Any:
    from datetime import timedelta

    return timedelta(0)


def test_parent_runs_once_after_every_child_with_their_results() -> None:
    app, seen, reserve, ship = make_app()
    flow_id = app.flow(ship.message(Order(order_id="o1")),
                       children=[reserve.message(Item(sku=s)) for s in ("a", "b", "c")])
    assert app.get_flow(flow_id).status == "running"
    app.drain()
    assert seen == [("o1", [{"reserved": "a"}, {"reserved": "b"}, {"reserved": "c"}], [])]
    flow = app.get_flow(flow_id)
    assert flow.status == "succeeded"
    assert [c.status for c in flow.children] == ["succeeded"] * 3


def test_policy_fail_marks_the_flow_failed_naming_the_child_and_the_parent_never_runs() -> None:
    app, seen, reserve, ship = make_app()
    flow_id = app.flow(ship.message(Order(order_id="o2")),
                       children=[reserve.message(Item(sku="a")), reserve.message(Item(sku="b", fail=True))])
    report = app.drain()
    assert seen == []
    flow = app.get_flow(flow_id)
    assert flow.status == "failed"
    assert flow.reason is not None and "child 1 (reserve" in flow.reason and "b is out of stock" in flow.reason
    assert report.dead_lettered == 1


def test_policy_ignore_runs_the_parent_with_the_successes_only() -> None:
    app, seen, reserve, ship = make_app()
    app.flow(ship.message(Order(order_id="o3")), on_child_failure="ignore",
             children=[reserve.message(Item(sku="a", fail=True)), reserve.message(Item(sku="b"))])
    app.drain()
    assert seen == [("o3", [{"reserved": "b"}], [])]


def test_policy_continue_runs_the_parent_with_the_failures_listed() -> None:
    app, seen, reserve, ship = make_app()
    flow_id = app.flow(ship.message(Order(order_id="o4")), on_child_failure="continue",
                       children=[reserve.message(Item(sku="a", fail=True)), reserve.message(Item(sku="b"))])
    app.drain()
    assert seen == [("o4", [None, {"reserved": "b"}], [0])]
    failed = app.get_flow(flow_id).children[0]
    assert failed.status == "failed" and failed.error is not None and "a is out of stock" in failed.error


def test_children_finishing_at_once_on_many_threads_send_the_parent_exactly_once() -> None:
    app, seen, reserve, ship = make_app()
    flow_id = app.flow(ship.message(Order(order_id="o5")),
                       children=[reserve.message(Item(sku=str(i))) for i in range(24)])
    sent: list[str] = []

    class Count(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            sent.extend(m.job_type for m in messages)
            return call_next(messages)

    app.add_middleware(Count())
    step = FlowStep(app)
    barrier = threading.Barrier(24)

    def finish(index: int) -> None:
        barrier.wait(timeout=30)
        step.finish(flow_id, index, ok=True, value=index)

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    flow = app.get_flow(flow_id)
    assert flow.status == "parent_enqueued"
    assert flow.results == list(range(24))
    assert sent == ["ship"]
    # the children's own messages are still queued: they run, find their ends recorded, and
    # change nothing; the parent runs once
    app.drain()
    assert sent == ["ship"]
    assert len(seen) == 1 and seen[0][1] == list(range(24))


def test_a_redelivered_parent_runs_once() -> None:
    app, seen, reserve, ship = make_app()
    flow_id = app.flow(ship.message(Order(order_id="o6")), children=[reserve.message(Item(sku="a"))])
    sent: list[Any] = []

    class Copy(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            sent.extend(m for m in messages if m.job_type == "ship")
            return call_next(messages)

    app.add_middleware(Copy())
    app.drain()
    assert len(sent) == 1 and len(seen) == 1
    # the queue delivers the parent's message again (at-least-once): the store's guard skips it
    result = app.dispatcher.handle(Delivery(sent[0].body, 1, "copy-1"))
    assert result is not None and result.outcome is cq.Outcome.SKIP
    assert len(seen) == 1 and app.get_flow(flow_id).status == "succeeded"


def test_flow_needs_a_store_and_says_how_to_add_one() -> None:
    app = cq.App("nostore", backend="memory://")

    @app.job
    def a(payload: Order) -> None: ...

    with pytest.raises(cq.ConfigurationError, match=r"store='memory://'"):
        app.flow(a.message(Order(order_id="1")), children=[a.message(Order(order_id="2"))])


def test_bad_arguments_are_refused_by_name() -> None:
    app, _, reserve, ship = make_app()
    with pytest.raises(cq.ConfigurationError, match="on_child_failure='maybe'"):
        app.flow(ship.message(Order(order_id="1")), children=[reserve.message(Item(sku="a"))],
                 on_child_failure="maybe")
    with pytest.raises(cq.ConfigurationError, match="has no children"):
        app.flow(ship.message(Order(order_id="1")), children=[])
    with pytest.raises(cq.ConfigurationError, match=r"job\.message"):
        app.flow(ship.message(Order(order_id="1")), children=[{"sku": "a"}])  # type: ignore[list-item]
    with pytest.raises(FlowNotFound, match="no flow 'nope'"):
        app.get_flow("nope")


def test_starting_a_named_flow_again_runs_each_child_and_the_parent_once() -> None:
    app, seen, _reserve, ship = make_app()
    calls: list[str] = []

    @app.job
    def count(payload: Item) -> str:
        calls.append(payload.sku)
        return payload.sku

    for _ in range(2):
        app.flow(ship.message(Order(order_id="o7")), flow_id="order-o7",
                 children=[count.message(Item(sku="a")), count.message(Item(sku="b"))])
    app.drain()
    assert sorted(calls) == ["a", "b"]
    assert seen == [("o7", ["a", "b"], [])]


def test_old_consumers_ignore_the_flow_attributes() -> None:
    from cloudqueue.envelope import decode

    app, _, reserve, ship = make_app()
    sent: list[bytes] = []

    class Copy(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            sent.extend(m.body for m in messages)
            return call_next(messages)

    app.add_middleware(Copy())
    app.flow(ship.message(Order(order_id="o8")), children=[reserve.message(Item(sku="a"))])
    env = decode(sent[0])
    assert env.type == "reserve" and env.key is not None and env.key.startswith("cqflow-")
    assert b'"cqflow":"' in sent[0]


def test_a_dead_lettered_child_settled_while_another_sends_the_parent_does_not_send_it_again() -> None:
    """Child 0 dead-letters (its end is recorded in its run); child 1 finishes the flow and
    is sending the parent when child 0 settles, whose dead letter is recorded again (a
    no-op): that must not send a second copy of the parent."""
    app, seen, reserve, ship = make_app()
    parent_sending, failure_settled = threading.Event(), threading.Event()
    sends: list[str] = []

    class Interleave(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            if any(m.job_type == "ship" for m in messages):
                sends.append(threading.current_thread().name)
                if not parent_sending.is_set():
                    parent_sending.set()
                    failure_settled.wait(30)  # child 1 sends while child 0 settles
            result: list[str] = call_next(messages)
            return result

        def run(self, task: Any, call_next: Any) -> Any:
            try:
                return call_next()
            except cq.Permanent:
                assert parent_sending.wait(30)  # child 0's end is recorded: child 1 finishes the flow
                raise

        def settled(self, result: Any) -> None:
            if result.outcome.value == "dead_letter":
                failure_settled.set()

    app.add_middleware(Interleave())
    flow_id = app.flow(ship.message(Order(order_id="o9")), on_child_failure="continue",
                       children=[reserve.message(Item(sku="a", fail=True)), reserve.message(Item(sku="b"))])
    deliveries = app.backend.receive(max_messages=10)
    assert len(deliveries) == 2

    def consume(delivery: Delivery) -> None:
        app.dispatcher.settle(app.backend, app.dispatcher.process(delivery))

    threads = [threading.Thread(target=consume, args=(d,), name="child-0" if b'"sku":"a"' in d.body else "child-1")
               for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert sends == ["child-1"], "only the consumer whose write finished the flow sends the parent"
    assert app.get_flow(flow_id).status == "parent_enqueued"
    app.drain()
    assert seen == [("o9", [None, {"reserved": "b"}], [0])]
