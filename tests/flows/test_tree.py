"""Children that are flows themselves: a subflow's parent is its outer flow's child."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.flows import Subflow


class Step(BaseModel):
    name: str
    fail: bool = False


def make_app() -> tuple[cq.App, list[tuple[str, Any, list[int]]]]:
    app = cq.App("tree", backend="memory://", store="memory://")
    seen: list[tuple[str, Any, list[int]]] = []

    @app.job
    def pick(payload: Step) -> str:
        if payload.fail:
            raise cq.Permanent(f"{payload.name} is missing")
        return f"picked {payload.name}"

    @app.job
    def pack(payload: Step, ctx: cq.JobContext) -> dict[str, Any]:
        assert ctx.flow is not None
        seen.append((payload.name, ctx.flow.results, [c.index for c in ctx.flow.failures]))
        return {"box": payload.name, "items": ctx.flow.results}

    @app.job
    def charge(payload: Step) -> str:
        return f"charged {payload.name}"

    @app.job
    def ship(payload: Step, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        seen.append((payload.name, ctx.flow.results, [c.index for c in ctx.flow.failures]))

    return app, seen


def _start(app: cq.App, *, fail: bool = False, inner: str = "fail", outer: str = "fail") -> str:
    pick, pack, charge, ship = (app.get_job(n) for n in ("pick", "pack", "charge", "ship"))
    return app.flow(ship.message(Step(name="o-1")), on_child_failure=outer, children=[
        Subflow(pack.message(Step(name="box-1")), on_child_failure=inner,
                children=[pick.message(Step(name="a")), pick.message(Step(name="b", fail=fail))]),
        charge.message(Step(name="card"))])


def test_the_outer_parent_runs_after_the_subflow_s_parent_with_its_result() -> None:
    app, seen = make_app()
    flow_id = _start(app)
    app.drain()
    assert seen == [("box-1", ["picked a", "picked b"], []),
                    ("o-1", [{"box": "box-1", "items": ["picked a", "picked b"]}, "charged card"], [])]
    flow = app.get_flow(flow_id)
    assert flow.status == "succeeded" and flow.children[0].flow == f"{flow_id}.0"
    assert app.get_flow(f"{flow_id}.0").status == "succeeded"


def test_a_failed_subflow_fails_its_outer_flow_under_fail() -> None:
    app, seen = make_app()
    flow_id = _start(app, fail=True)
    app.drain()
    assert seen == []
    inner, outer = app.get_flow(f"{flow_id}.0"), app.get_flow(flow_id)
    assert inner.status == "failed" and "b is missing" in (inner.reason or "")
    assert outer.status == "failed"
    assert outer.reason is not None and outer.reason.startswith("child 0 (pack ")
    assert f"failed: its flow {flow_id}.0 failed" in outer.reason


def test_a_failed_subflow_is_listed_to_an_outer_parent_under_continue() -> None:
    app, seen = make_app()
    _start(app, fail=True, outer="continue")
    app.drain()
    assert seen == [("o-1", [None, "charged card"], [0])]


@pytest.mark.parametrize("inner", ["ignore", "continue"])
def test_a_subflow_that_tolerates_failures_runs_its_parent(inner: str) -> None:
    app, seen = make_app()
    _start(app, fail=True, inner=inner)
    app.drain()
    expected_items: list[Any] = ["picked a"] if inner == "ignore" else ["picked a", None]
    assert seen[0] == ("box-1", expected_items, [] if inner == "ignore" else [1])
    assert seen[1][0] == "o-1" and seen[1][2] == []
