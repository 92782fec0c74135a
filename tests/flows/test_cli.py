"""``cloudqueue flows show``: a flow's state read from the store by another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import cloudqueue as cq
from cloudqueue.cli import cli
from tests.store.stores import dynamodb_endpoint, dynamodb_table

ROOT = Path(__file__).resolve().parents[2]


def _show(store: str, *args: str, command_name: str = "show") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDQUEUE_STORE_URL": store,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "from cloudqueue.cli import main; main()", "flows", command_name,
               "tests.flows.cli_app:app", *args]
    return subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_flows_show_prints_each_child_from_a_dynamodb_store(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    app = cq.App("clishop", backend="memory://", store=store)
    from tests.flows import cli_app

    for job in cli_app.app.jobs.values():
        app.job(name=job.name)(job.func)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    flow_id = app.flow(ship.message(cli_app.Order(order_id="o-1")), on_child_failure="fail",
                       children=[reserve.message(cli_app.Item(sku="a")),
                                 reserve.message(cli_app.Item(sku="b", fail=True))])

    shown = _show(store, flow_id)
    assert shown.returncode == 0, shown.stderr
    assert f"flow {flow_id}: running (0/2 children finished, policy 'fail')" in shown.stdout

    app.drain()
    shown = _show(store, flow_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"flow {flow_id}: failed (2/2 children finished, policy 'fail')"
    assert any(line.startswith("reason:") and "child 1 (reserve" in line for line in lines)
    assert any(line.startswith("0 ") and "succeeded" in line and '{"reserved": "a"}' in line for line in lines)
    assert any(line.startswith("1 ") and "failed" in line and "b is out of stock" in line for line in lines)

    as_json = _show(store, flow_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["status"] == "failed" and [c["status"] for c in data["children"]] == ["succeeded", "failed"]
    app.close()


def test_flows_show_names_an_unknown_flow_in_one_error_line(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    shown = _show(store, "nope")
    assert shown.returncode == 1
    errors = [line for line in shown.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: app 'clishop' has no flow 'nope' in its store (never started, or older than its ttl)"]


def test_flows_show_refuses_a_private_memory_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDQUEUE_STORE_URL", "memory://")
    monkeypatch.syspath_prepend(str(ROOT))
    import importlib

    import tests.flows.cli_app as module

    importlib.reload(module)  # the app reads the store URL when it is made
    result = CliRunner().invoke(cli, ["flows", "show", "tests.flows.cli_app:app", "x"])
    assert result.exit_code == 1
    assert "private in-process memory store" in result.output


def test_flows_list_prints_the_flows_newest_first_from_a_dynamodb_store(request: pytest.FixtureRequest) -> None:
    from cloudqueue.testing import FakeClock

    endpoint = dynamodb_endpoint(request)
    store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    empty = _show(store, command_name="list")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "no flows in the store of app 'clishop'"

    clock = FakeClock(datetime.now(timezone.utc))
    app = cq.App("clishop", backend="memory://", store=store, clock=clock)
    from tests.flows import cli_app

    for job in cli_app.app.jobs.values():
        app.job(name=job.name)(job.func)
    reserve, ship = app.get_job("reserve"), app.get_job("ship")
    failed = app.flow(ship.message(cli_app.Order(order_id="o-1")), flow_id="order-1",
                      children=[reserve.message(cli_app.Item(sku="a", fail=True))])
    app.drain()
    clock.advance(timedelta(minutes=1))
    app.flow(ship.message(cli_app.Order(order_id="o-2")), flow_id="order-2", on_child_failure="continue",
             children=[reserve.message(cli_app.Item(sku="b")), reserve.message(cli_app.Item(sku="c"))])

    listed = _show(store, command_name="list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["flow", "status", "children", "policy", "parent", "part", "of", "started"]
    assert lines[1].split()[:6] == ["order-2", "running", "0/2", "continue", "ship", "-"]
    assert lines[2].split()[:6] == ["order-1", "failed", "1/1", "fail", "ship", "-"]

    only = _show(store, "--status", "failed", "--json", command_name="list")
    assert only.returncode == 0, only.stderr
    rows = [json.loads(line) for line in only.stdout.splitlines()]
    assert [(r["id"], r["status"], r["finished"], r["children"]) for r in rows] == [(failed, "failed", 1, 1)]
    assert "child 0 (reserve" in rows[0]["reason"]

    limited = _show(store, "--limit", "1", command_name="list")
    assert [line.split()[0] for line in limited.stdout.splitlines()[1:]] == ["order-2"]
    bad = _show(store, "--status", "done", command_name="list")
    assert bad.returncode == 1 and "error:" in bad.stderr and "'done'" in bad.stderr
    app.close()
