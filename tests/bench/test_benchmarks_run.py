"""Each benchmark runs at a tiny size and prints its table (no timing is asserted here)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing_component

ROOT = Path(__file__).resolve().parents[2]


def needs(*modules: str) -> None:
    """Peers come from the root pyproject's ``bench`` extra (moto from the AWS adapter's tests)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            missing_component(f"benchmark peer {module!r}",
                              'install the peers: pip install -e ".[bench]" -e "adapters/aws[test]"')


ROW = re.compile(r"^  (?P<name>\S.*?) {2,}(?P<value>-?[\d,]+\.\d\d) {2,}(?P<ratio>-?[\d.]+|nan)x$")


def table_rows(out: str, title: str) -> dict[str, float]:
    """The rows of the table headed ``title``: row name -> its value."""
    assert title in out, out
    lines = out.split(title, 1)[1].splitlines()[2:]
    rows: dict[str, float] = {}
    for line in lines:
        match = ROW.match(line)
        if match is None:
            break
        rows[match["name"]] = float(match["value"].replace(",", ""))
    return rows


def test_cold_start_times_every_path_and_the_lambda_path_loads_no_cloud_sdk(
        capsys: pytest.CaptureFixture[str]) -> None:
    needs("cloudqueue_aws", "aws_lambda_powertools", "boto3")
    from bench import cold_start

    cold_start.main(["--runs", "1", "--importtime", "3"])  # raises SystemExit on an SDK leak
    out = capsys.readouterr().out
    rows = table_rows(out, "Cold start, median of 1 fresh processes")
    for name in ("pydantic BaseModel", "import cloudqueue", "cloudqueue_aws + Lambda handler",
                 "Powertools batch + parser model", "import boto3"):
        assert name in rows, out
    assert "cloudqueue_aws + Lambda handler over pydantic:" in out
    lambda_modules = out.split("cloud SDK modules loaded", 1)[1]
    assert "cloudqueue_aws + Lambda handler  " in lambda_modules
    assert "grpc, opentelemetry):" in lambda_modules  # OpenTelemetry is looked for too
    for path in ("cloudqueue_aws + Lambda handler", "import cloudqueue", "cloudqueue core + app + job"):
        assert next(line for line in lambda_modules.splitlines()
                    if line.strip().startswith(path)).endswith("none"), path


def test_lambda_overhead_compares_the_shim_with_the_bare_loop_and_powertools(
        capsys: pytest.CaptureFixture[str]) -> None:
    needs("cloudqueue_aws", "aws_lambda_powertools", "aws_xray_sdk", "opentelemetry", "opentelemetry.sdk")
    from bench import lambda_overhead

    lambda_overhead.main(["--records", "12", "--runs", "1"])
    out = capsys.readouterr().out
    rows = table_rows(out, "Lambda shim, 12-record SQS event")
    assert set(rows) == {"json.loads + model_validate", "core dispatcher prepare + run",
                         "cloudqueue_aws.lambda_handler", "lambda_handler + 1 no-op middleware",
                         "lambda_handler + OpenTelemetry, API no-op",
                         "lambda_handler + OpenTelemetry, SDK recording",
                         "lambda_handler + CloudWatch EMF",
                         "Powertools BatchProcessor + json/validate",
                         "Powertools BatchProcessor + SqsRecordModel",
                         "Powertools BatchProcessor + Metrics",
                         "Powertools BatchProcessor + Tracer + Metrics"}, out
    assert "lambda_handler + OpenTelemetry, SDK recording is " in out
    assert "lambda_handler + CloudWatch EMF is " in out
    # in a process that loaded boto3 earlier only new imports count (tests/aws checks a fresh one)
    assert "boto3/botocore imported by cloudqueue: none" in out


def test_sqs_enqueue_sends_every_message_through_moto_server(capsys: pytest.CaptureFixture[str]) -> None:
    needs("cloudqueue_aws", "boto3", "moto")
    from bench import sqs_enqueue

    sqs_enqueue.main(["--messages", "12", "--per-queue", "10", "--runs", "1"])
    out = capsys.readouterr().out
    rows = table_rows(out, "SQS enqueue against moto server on loopback, 12 messages")
    assert set(rows) == {"cloudqueue enqueue_many", "boto3 send_message_batch, by hand",
                         "cloudqueue enqueue, one by one", "boto3 send_message loop"}, out
    assert "cloudqueue enqueue_many is " in out


def test_claim_check_round_trip_runs_every_row_through_moto_server() -> None:
    needs("cloudqueue_aws", "boto3", "moto", "sqs_extended_client")
    # a process of its own: importing the SQS extended client swaps boto3's Session class
    done = subprocess.run([sys.executable, "-m", "bench.claim_check", "--size", "0.2", "--runs", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr  # each row asserts it moved the payload and cleaned up
    rows = table_rows(done.stdout, "Claim check round trip on moto server (SQS + S3), a 0.2 MB payload, median of 1")
    assert set(rows) == {"cloudqueue claim check", "SQS extended client", "boto3 by hand"}, done.stdout


def test_memory_throughput_runs_all_four_peers_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    needs("taskiq", "dramatiq")
    from bench import memory_throughput

    memory_throughput.main(["--jobs", "8", "--runs", "1"])
    out = capsys.readouterr().out
    rows = table_rows(out, "memory backend end to end, 8 no-op jobs")
    assert set(rows) == {"cloudqueue drain", "cloudqueue worker(8, prefetch 2)", "taskiq InMemoryBroker",
                         "dramatiq StubBroker(8)"}, out


def test_python_dash_m_bench_runs_the_chosen_benchmarks_with_tiny_sizes() -> None:
    needs("cloudqueue_aws", "aws_lambda_powertools", "aws_xray_sdk", "opentelemetry", "opentelemetry.sdk")
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "lambda"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Lambda shim, 20-record SQS event, median of 1 runs" in done.stdout
    assert "SQS enqueue" not in done.stdout


def test_python_dash_m_bench_refuses_an_unknown_benchmark_name() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "lambda,colde"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "unknown benchmark(s) colde" in done.stderr


@pytest.mark.parametrize("target", ["memory", "worker", "lambda"])
def test_the_profiler_prints_the_hot_path_of_each_target(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    if target == "lambda":
        needs("cloudqueue_aws")
    from bench import profile

    profile.main([target, "--size", "20", "--top", "3"])
    out = capsys.readouterr().out
    assert f"\n{target}: " in out
    assert "Ordered by: internal time" in out


def test_store_lambda_compares_the_dynamodb_store_with_powertools_idempotency(
        capsys: pytest.CaptureFixture[str]) -> None:
    needs("cloudqueue_aws", "aws_lambda_powertools", "boto3", "moto")
    from bench import store_lambda

    store_lambda.main(["--records", "4", "--runs", "1"])
    out = capsys.readouterr().out
    rows = table_rows(out, "Idempotency store on the Lambda shim, 4-record SQS event")
    assert set(rows) == {store_lambda.NO_STORE, store_lambda.OURS_FIRST, store_lambda.OURS_AGAIN,
                         store_lambda.PEER_FIRST, store_lambda.PEER_AGAIN}, out
    assert "first delivery: cloudqueue is " in out


def test_flows_runs_every_row_and_each_parent_reads_all_its_childrens_results(
        capsys: pytest.CaptureFixture[str]) -> None:
    needs("dramatiq", "celery")
    from bench import flows

    flows.main(["--quick"])  # a parent that misses a child's result raises
    out = capsys.readouterr().out
    rows = table_rows(out, "flows end to end, 5 flows x 3 no-op children")
    assert set(rows) == {flows.FLOW_DRAIN, flows.FLOW_WORKER, flows.KEYED_DRAIN, flows.PLAIN_DRAIN,
                         flows.DRAMATIQ_GROUP, flows.DRAMATIQ_PLAIN, flows.CELERY_CHORD, flows.CELERY_PLAIN}, out
    for system in ("cloudqueue", "dramatiq", "celery"):
        assert f"  {system}: a flow costs " in out, out


def test_the_flows_benchmark_leaves_the_root_logger_as_it_found_it() -> None:
    """Celery's worker sets the root logger's level; the tests after this one log at WARNING."""
    import logging

    from bench import flows

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    flows.main(["--quick"])
    assert (root.level, root.handlers) == (level, handlers)
