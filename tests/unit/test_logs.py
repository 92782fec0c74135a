"""Structured logs: exactly one record per outcome, written by the dispatcher's settle path
whichever consumer ran the job (drain, worker, Lambda shim), with the facts as attributes;
the JSON formatter and ``configure``."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
import cloudqueue.logs
from cloudqueue.backends.memory import MemoryBackend
from tests.aws.conftest import FakeLambdaContext, make_queue, sqs  # noqa: F401 - the AWS fixtures
from tests.aws.esm import receive_event


class Order(BaseModel):
    order_id: str


def jobs(app: cq.App) -> dict[str, Any]:
    """One job of each fate: succeeds, fails once then succeeds, fails for good."""

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(0))))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        if payload.order_id == "flaky" and ctx.attempt == 1:
            raise TimeoutError("processor timed out")

    @app.job
    def cancel(payload: Order) -> None:
        raise cq.Permanent("already shipped")

    return {"charge": charge, "cancel": cancel}


def enqueue_all(app: cq.App, made: dict[str, Any], poison: Any) -> dict[str, str]:
    ids = dict(zip(("ok", "flaky"), made["charge"].enqueue_many([Order(order_id="ok"), Order(order_id="flaky")]),
                   strict=True))
    ids["cancel"] = made["cancel"].enqueue(Order(order_id="3"))
    poison()
    return ids


def outcome_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cloudqueue.jobs"]


def fates(records: list[logging.LogRecord]) -> list[tuple[Any, ...]]:
    return sorted((r.job_type or "?", r.outcome, r.attempt, r.reason_kind, r.levelname)  # type: ignore[attr-defined]
                  for r in records)


EXPECTED = [
    ("?", "dead_letter", 1, "poison", "ERROR"),
    ("cancel", "dead_letter", 1, "permanent", "ERROR"),
    ("charge", "ack", 1, None, "INFO"),
    ("charge", "ack", 2, None, "INFO"),
    ("charge", "retry", 1, "failed", "WARNING"),
]


def no_duplicates(caplog: pytest.LogCaptureFixture, ids: dict[str, str]) -> None:
    """No line besides the outcome records speaks of a job: nothing said twice."""
    for record in caplog.records:
        if record.name != "cloudqueue.jobs":
            message = record.getMessage()
            assert not any(job_id in message for job_id in ids.values()), (record.name, message)


@pytest.fixture
def info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="cloudqueue"):
        yield caplog


def test_drain_logs_one_record_per_outcome_with_its_facts(
        cq_app: cq.App, cq_backend: MemoryBackend, info: pytest.LogCaptureFixture) -> None:
    ids = enqueue_all(cq_app, jobs(cq_app), lambda: cq_backend.send(
        [cq.OutgoingMessage(body=b"not json", job_id="p", job_type="charge")]))
    cq_app.drain()
    records = outcome_records(info)
    assert fates(records) == EXPECTED
    no_duplicates(info, ids)
    [retry] = [r for r in records if r.outcome == "retry"]  # type: ignore[attr-defined]
    assert retry.job_id == ids["flaky"] and retry.reason == "TimeoutError: processor timed out"  # type: ignore[attr-defined]
    assert retry.delay == 0 and retry.settled is True and retry.queue == "test"  # type: ignore[attr-defined]
    assert "attempt 1 failed (TimeoutError: processor timed out); retrying in 0s" in retry.getMessage()
    for record in records:
        ran = record.reason_kind != "poison"  # type: ignore[attr-defined]
        assert (record.duration is not None) == ran  # type: ignore[attr-defined]
        assert record.trace_id is None and record.span_id is None  # type: ignore[attr-defined]


def test_the_worker_logs_one_record_per_outcome(
        cq_app: cq.App, cq_backend: MemoryBackend, info: pytest.LogCaptureFixture) -> None:
    ids = enqueue_all(cq_app, jobs(cq_app), lambda: cq_backend.send(
        [cq.OutgoingMessage(body=b"not json", job_id="p", job_type="charge")]))
    cq_app.worker(concurrency=2, handle_signals=False, poll_wait=timedelta(milliseconds=50)).run(until_empty=True)
    assert fates(outcome_records(info)) == EXPECTED
    no_duplicates(info, ids)


def test_successes_are_not_logged_below_info(cq_app: cq.App, caplog: pytest.LogCaptureFixture) -> None:
    made = jobs(cq_app)
    made["charge"].enqueue(Order(order_id="ok"))
    made["cancel"].enqueue(Order(order_id="1"))
    with caplog.at_level(logging.WARNING, logger="cloudqueue"):
        cq_app.drain()
    assert [(r.job_type, r.outcome) for r in outcome_records(caplog)] == [("cancel", "dead_letter")]  # type: ignore[attr-defined]


def test_the_sqs_worker_logs_one_record_per_outcome(sqs: Any, make_queue: Any,  # noqa: F811
                                                     info: pytest.LogCaptureFixture) -> None:
    from cloudqueue_aws import SQSBackend

    pair = make_queue(prefix="logs")
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    ids = enqueue_all(app, jobs(app), lambda: sqs.send_message(QueueUrl=pair.url, MessageBody="not json"))
    app.worker(concurrency=2, handle_signals=False, poll_wait=timedelta(seconds=1)).run(until_empty=True)
    records = outcome_records(info)
    assert fates(records) == EXPECTED
    no_duplicates(info, ids)
    assert {r.queue for r in records} == {pair.url.rsplit("/", 1)[-1]}  # type: ignore[attr-defined]


def test_the_lambda_shim_logs_one_record_per_outcome(sqs: Any, make_queue: Any,  # noqa: F811
                                                     info: pytest.LogCaptureFixture) -> None:
    from cloudqueue_aws import SQSBackend, lambda_handler

    pair = make_queue(prefix="logs")
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    ids = enqueue_all(app, jobs(app), lambda: sqs.send_message(QueueUrl=pair.url, MessageBody="not json"))
    handler = lambda_handler(app, client=sqs)
    event = receive_event(sqs, pair.url, pair.arn, 4)
    response = handler(event, FakeLambdaContext(60_000))
    assert len(response["batchItemFailures"]) == 1
    assert fates(outcome_records(info)) == [f for f in EXPECTED if f[2] == 1]
    no_duplicates(info, ids)
    [success] = [r for r in outcome_records(info) if r.outcome == "ack"]  # type: ignore[attr-defined]
    assert success.message_id in {r["messageId"] for r in event["Records"]}  # type: ignore[attr-defined]
    assert success.duration is not None  # type: ignore[attr-defined]
    # the queue the event came from (its ARN's name), as the shim settled against it
    assert {r.queue for r in outcome_records(info)} == {pair.arn.rsplit(":", 1)[-1]}  # type: ignore[attr-defined]


# -- the formatter ----------------------------------------------------------------------------------
def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("cloudqueue.jobs", logging.WARNING, __file__, 1, "job %s failed", ("x",), None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_writes_the_fields_as_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    line = cloudqueue.logs.JSONFormatter({"service": "orders"}).format(
        _record(job_id="abc", attempt=2, duration=0.25, delay=timedelta(seconds=3), trace_id=None))
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "cloudqueue.jobs" and doc["message"] == "job x failed"
    assert doc["timestamp"].endswith("Z") and doc["service"] == "orders"
    assert (doc["job_id"], doc["attempt"], doc["duration"]) == ("abc", 2, 0.25)
    assert doc["delay"] == "0:00:03"  # what JSON cannot hold is written as text
    assert "trace_id" not in doc  # None fields are left out
    assert doc["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


def test_json_formatter_writes_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record(exc_info=sys.exc_info())
    doc = json.loads(cloudqueue.logs.JSONFormatter().format(record))
    assert doc["exception"].startswith("Traceback") and "ValueError: bad" in doc["exception"]


@pytest.fixture
def bare_root() -> Iterator[logging.Logger]:
    """The root logger, its handlers (pytest's own) and cloudqueue's level put back afterwards;
    the test empties it (pytest adds its handlers again as each test phase starts)."""
    root = logging.getLogger()
    saved, level = root.handlers[:], logging.getLogger("cloudqueue").level
    yield root
    root.handlers = saved
    logging.getLogger("cloudqueue").setLevel(level)


def test_configure_adds_one_json_handler_and_shows_successes(cq_app: cq.App, bare_root: logging.Logger) -> None:
    bare_root.handlers = []
    stream = io.StringIO()
    cloudqueue.logs.configure(json=True, stream=stream)
    [handler] = cloudqueue.logs.configure(json=True, stream=stream)  # again: no second handler
    assert bare_root.handlers == [handler]
    jobs(cq_app)["charge"].enqueue(Order(order_id="ok"))
    cq_app.drain()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines() if '"cloudqueue.jobs"' in x]
    assert line["outcome"] == "ack" and line["job_type"] == "charge" and line["level"] == "INFO"


def test_configure_formats_the_runtime_s_own_handler(bare_root: logging.Logger) -> None:
    bare_root.handlers = []
    stream = io.StringIO()
    runtime = logging.StreamHandler(stream)  # a function runtime installs one on the root logger
    bare_root.addHandler(runtime)
    assert cloudqueue.logs.configure(json=True) == [runtime]
    logging.getLogger("cloudqueue").info("hello")
    assert json.loads(stream.getvalue())["message"] == "hello"


def test_the_readme_logs_example_writes_the_lines_it_shows() -> None:
    import re
    import subprocess
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split("### Logs", 1)[1].split("\n### ", 1)[0]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "", "PYTHONPATH": str(readme.parent)}).stdout
    varying = ("timestamp", "job_id", "message_id", "duration", "message")
    got = [json.loads(line) for line in out.splitlines()]
    want = [json.loads(line) for line in shown.splitlines()]
    assert [{k: v for k, v in d.items() if k not in varying} for d in got] == [
        {k: v for k, v in d.items() if k not in varying} for d in want]
    assert [list(d) for d in got] == [list(d) for d in want]
    assert re.fullmatch(r"job ship [0-9a-f]{32} completed \(attempt 1, \d+\.\d ms\)", got[1]["message"])


def test_the_module_exports_exactly_its_documented_names() -> None:
    assert sorted(cloudqueue.logs.__all__) == ["FIELDS", "JSONFormatter", "configure", "queue_name", "trace_ids"]
    for name in cloudqueue.logs.__all__:
        assert getattr(cloudqueue.logs, name) is not None
