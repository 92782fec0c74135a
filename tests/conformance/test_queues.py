"""Several queues and priorities on every backend: routing, strict order, each queue's own
dead letters, and per-message priority (or a clear refusal where the queue has none)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import cloudqueue as cq

from .harness import Harness

pytestmark = pytest.mark.conformance


class Order(BaseModel):
    order_id: str


def test_jobs_run_from_the_queue_they_were_routed_to(harness: Harness) -> None:
    app = harness.queues_app()
    seen: list[tuple[str, str]] = []

    @app.job(queue="critical")
    def alert(payload: Order) -> None:
        seen.append(("alert", payload.order_id))

    @app.job
    def charge(payload: Order) -> None:
        seen.append(("charge", payload.order_id))

    alert.enqueue(Order(order_id="a1"))
    charge.enqueue(Order(order_id="c1"))
    charge.enqueue(Order(order_id="c2"), queue="critical")
    harness.run_due(app, queues=["critical"])
    assert sorted(seen) == [("alert", "a1"), ("charge", "c2")]
    harness.run_due(app)
    assert sorted(seen) == [("alert", "a1"), ("charge", "c1"), ("charge", "c2")]


def test_enqueue_many_sends_each_queues_messages_to_it(harness: Harness) -> None:
    app = harness.queues_app()
    ran: list[str] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        ran.append(ctx.job_id)

    items = [charge.message(Order(order_id=str(n)), queue=("critical", "default")[n % 2]) for n in range(6)]
    ids = charge.enqueue_many(items)
    harness.run_due(app, queues=["critical"])
    assert sorted(ran) == sorted(ids[0::2])
    harness.run_due(app, queues=["default"])
    assert sorted(ran) == sorted(ids)


def test_each_queue_keeps_its_own_dead_letters(harness: Harness) -> None:
    app = harness.queues_app()

    @app.job(queue="critical")
    def alert(payload: Order) -> None:
        raise cq.Permanent(f"cannot page for {payload.order_id}")

    alert.enqueue(Order(order_id="a1"))
    harness.run_due(app)
    letters = app.queue("critical").dead_letters()
    assert [letter.kind for letter in letters] == [cq.ReasonKind.PERMANENT]
    assert app.queue("default").dead_letters() == []


def test_strict_drain_runs_the_higher_queue_first(harness: Harness) -> None:
    if not harness.backend.capabilities.pull:
        pytest.skip(f"{harness.name}: the platform pushes each queue on its own; priority between "
                    "push queues is each queue's dispatch rate and concurrency (terraform queues)")
    app = harness.queues_app()
    ran: list[str] = []

    @app.job(queue="critical")
    def alert(payload: Order) -> None:
        ran.append("critical")

    @app.job
    def charge(payload: Order) -> None:
        ran.append("default")

    charge.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    alert.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    harness.run_due(app)
    assert ran == ["critical"] * 3 + ["default"] * 3


def test_per_message_priority_runs_first_or_is_refused_clearly(harness: Harness) -> None:
    app = harness.app()
    ran: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        ran.append(payload.order_id)

    if not app.backend.capabilities.priority:
        with pytest.raises(cq.UnsupportedFeature, match=r"priority= needs.*Capabilities.priority"):
            charge.enqueue(Order(order_id="urgent"), priority=5)
        return
    charge.enqueue_many([Order(order_id=f"routine-{n}") for n in range(3)])
    charge.enqueue(Order(order_id="urgent"), priority=5)
    harness.run_due(app)
    assert ran[0] == "urgent" and sorted(ran[1:]) == ["routine-0", "routine-1", "routine-2"]
