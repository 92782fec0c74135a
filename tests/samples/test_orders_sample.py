"""The order-flow sample runs end to end on the memory backend, as README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_order_flow_runs_end_to_end_with_one_retry() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDQUEUE_URL"}
    proc = subprocess.run([sys.executable, "-m", "samples.orders"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "-> 201: order" in out
    for job in ("send_confirmation_email", "generate_invoice", "update_analytics"):
        assert f"enqueued {job}" in out
    assert "attempt 1: mail server timed out, will retry" in out
    assert "attempt 2: sent to ada@example.com" in out
    assert "invoice INV-" in out and "revenue 48.30" in out
    assert "done: 3 succeeded, 1 retried, 0 dead-lettered" in out


def test_the_order_endpoint_rejects_a_bad_order_and_enqueues_nothing() -> None:
    import json
    import threading
    import urllib.error
    import urllib.request

    from samples.orders.jobs import app
    from samples.orders.web import make_server

    server = make_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/orders"
        bad = json.dumps({"customer_email": "x@y.z", "lines": [{"sku": "A", "quantity": 0,
                                                              "unit_price": "1"}]}).encode()
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=bad), timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 422
            assert "quantity" in exc.read().decode()
        else:
            raise AssertionError("a zero quantity was accepted")
        assert app.backend.stats().waiting == 0
    finally:
        server.shutdown()
        server.server_close()


def test_order_flow_runs_on_sqs_against_moto(moto_server: str) -> None:
    boto3 = pytest.importorskip("boto3")
    cloudqueue_aws = pytest.importorskip("cloudqueue_aws")
    client = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    cloudqueue_aws.ensure_queue("sample-orders", client=client, max_receive_count=5)
    env = {**os.environ, "CLOUDQUEUE_URL": f"sqs://sample-orders?region=us-east-1&endpoint_url={moto_server}"}
    proc = subprocess.run([sys.executable, "-m", "samples.orders"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend: <SQSBackend sample-orders>" in proc.stdout
    assert "attempt 2: sent to ada@example.com" in proc.stdout
    assert "done: 3 succeeded, 1 retried, 0 dead-lettered" in proc.stdout
