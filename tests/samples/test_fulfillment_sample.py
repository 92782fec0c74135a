"""The fulfillment sample (order fulfillment as a flow) runs with one command, in memory
and on SQS + DynamoDB (moto server)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "samples.fulfillment", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _check(out: str) -> None:
    out, marker, retried = out.partition("LAMP-3 is restocked; retrying flow order-B-2")
    assert marker, "the sample retries the failed flow once LAMP-3 is restocked"
    assert "redriven from dead letters: 1 job(s)" in retried
    assert "reserve_inventory  B-2  LAMP-3 x1: reserved" in retried
    assert retried.count("ship_order         B-2  shipped {'BOOK-42': 1, 'LAMP-3': 1} to 2 Side St") == 1
    assert "flow order-B-2: succeeded (2/2 children finished, policy 'fail')" in retried
    assert "charge_payment     A-1  attempt 1: provider timed out, will retry" in out
    assert "pack_order         A-1  packed {'BOOK-42': 2, 'MUG-7': 1}" in out
    assert "ship_order         A-1  shipped {'BOOK-42': 2, 'MUG-7': 1} to 1 Main St (paid: pay-A-1)" in out
    assert "reserve_inventory  B-2  LAMP-3 x1: out of stock" in out
    assert "ship_order         B-2" not in out and "pack_order         B-2" not in out
    assert "flow order-A-1: succeeded (2/2 children finished, policy 'fail')" in out
    assert "flow order-B-2: failed" in out
    assert "LAMP-3 is out of stock (0 left, 1 wanted)" in out
    assert out.count("ship_order         A-1") == 1


def test_the_fulfillment_sample_runs_in_memory_with_one_command() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUDQUEUE_URL", "CLOUDQUEUE_STORE_URL")}
    out = _run(env)
    assert "backend: <MemoryBackend (private)>, store: <MemoryStore memory>" in out
    _check(out)
    assert "done: 7 succeeded, 2 retried, 1 dead-lettered" in out


def test_the_fulfillment_sample_runs_on_sqs_and_dynamodb(request: pytest.FixtureRequest) -> None:
    from tests.store.stores import dynamodb_endpoint, dynamodb_table

    store_endpoint = dynamodb_endpoint(request)
    import boto3
    from cloudqueue_aws import ensure_queue

    sqs_endpoint = request.getfixturevalue("moto_server")
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    pair = ensure_queue(f"fulfillment-{uuid.uuid4().hex[:10]}", client=sqs)
    env = {**os.environ,
           "CLOUDQUEUE_URL": f"sqs://{pair.name}?region=us-east-1&endpoint_url={sqs_endpoint}",
           "CLOUDQUEUE_STORE_URL": f"dynamodb://{dynamodb_table(store_endpoint)}?region=us-east-1"
                                   f"&endpoint_url={store_endpoint}"}
    out = _run(env)
    assert "store: <DynamoDBStore" in out
    _check(out)
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
    sqs.close()


def test_the_fulfillment_sample_runs_on_moto_with_one_command() -> None:
    """``--moto`` starts moto's server on loopback itself and runs on SQS + DynamoDB."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        from tests.conftest import missing_component

        missing_component("moto's server", '.venv/bin/pip install "moto[server]"')
    env = {k: v for k, v in os.environ.items() if k not in ("CLOUDQUEUE_URL", "CLOUDQUEUE_STORE_URL")}
    out = _run(env, "--moto")
    assert "backend: <SQSBackend" in out and "store: <DynamoDBStore" in out
    _check(out)
    assert "done: 7 succeeded, 2 retried, 1 dead-lettered" in out
    assert "POST / HTTP" not in out  # moto's request log stays out of the sample's output
