"""`cloudqueue doctor` on SQS + Lambda: a correct deployment has no findings; each fault is found.

Everything is deployed on moto server over HTTP (SQS, Lambda, IAM): the queues, a
function with its execution role and reserved concurrency, and the event source mapping.
"""

from __future__ import annotations

import io
import json
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.cli import cli
from cloudqueue.doctor import Report, Severity, diagnose

FOUR_DAYS, FOURTEEN_DAYS = 345600, 1209600


class Order(BaseModel):
    order_id: str


@dataclass(frozen=True)
class Deployment:
    """What to deploy; the defaults are a correct setup for jobs of at most 5 attempts."""

    fifo: bool = False
    max_receive_count: int | None = 10
    retention: int = FOUR_DAYS
    dlq_retention: int = FOURTEEN_DAYS
    encrypted: bool = True
    wait: int = 20
    function_timeout: int = 30
    visibility: int = 181
    window: int = 1
    report_failures: bool = True
    reserved: int | None = 12
    maximum_concurrency: int | None = 10
    filtered: bool = False
    enabled: bool = True
    send_to_dlq: bool = True
    send_to_queue: bool = True
    mapping: bool = True


@pytest.fixture(scope="module")
def aws(moto_server: str) -> Iterator[dict[str, Any]]:
    try:
        import boto3
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        from tests.conftest import missing_component

        missing_component("cloudqueue-aws and boto3", 'pip install -e "adapters/aws[test]"')
    clients = {name: boto3.client(name, endpoint_url=moto_server, region_name="us-east-1")
               for name in ("sqs", "lambda", "iam")}
    yield clients
    for client in clients.values():
        client.close()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def deploy(aws: dict[str, Any], moto_server: str, setup: Deployment) -> str:
    """Deploy ``setup`` on moto; return the app's backend URL."""
    sqs, lambda_, iam = aws["sqs"], aws["lambda"], aws["iam"]
    name = f"doc-{uuid.uuid4().hex[:10]}"
    suffix = ".fifo" if setup.fifo else ""
    common: dict[str, str] = {"FifoQueue": "true"} if setup.fifo else {}
    # SQS (and moto) turn SSE-SQS on by default: off has to be asked for.
    common["SqsManagedSseEnabled"] = "true" if setup.encrypted else "false"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes={
        **common, "MessageRetentionPeriod": str(setup.dlq_retention)})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {**common, "MessageRetentionPeriod": str(setup.retention),
                  "ReceiveMessageWaitTimeSeconds": str(setup.wait), "VisibilityTimeout": str(setup.visibility)}
    if setup.max_receive_count is not None:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn,
                                                  "maxReceiveCount": setup.max_receive_count})
    queue_url = sqs.create_queue(QueueName=f"{name}{suffix}", Attributes=attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if setup.mapping:
        role = iam.create_role(RoleName=f"{name}-consumer", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        statements = [{"Sid": "ConsumeQueue", "Effect": "Allow", "Resource": queue_arn,
                       "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                  "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]}]
        if setup.send_to_dlq:
            statements.append({"Sid": "SendDeadLetters", "Effect": "Allow", "Resource": dlq_arn,
                               "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"]})
        if setup.send_to_queue:
            statements.append({"Sid": "SendToQueue", "Effect": "Allow", "Resource": queue_arn,
                               "Action": "sqs:SendMessage"})
        iam.put_role_policy(RoleName=f"{name}-consumer", PolicyName=f"cloudqueue-{name}",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        lambda_.create_function(FunctionName=f"{name}-worker", Runtime="python3.11", Role=role["Role"]["Arn"],
                                Handler="handler.handler", Code={"ZipFile": _zip()},
                                Timeout=setup.function_timeout)
        if setup.reserved is not None:
            lambda_.put_function_concurrency(FunctionName=f"{name}-worker",
                                             ReservedConcurrentExecutions=setup.reserved)
        options: dict[str, Any] = {"BatchSize": 10, "Enabled": setup.enabled}
        if setup.window:
            options["MaximumBatchingWindowInSeconds"] = setup.window
        if setup.report_failures:
            options["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        if setup.maximum_concurrency is not None:
            options["ScalingConfig"] = {"MaximumConcurrency": setup.maximum_concurrency}
        if setup.filtered:
            options["FilterCriteria"] = {"Filters": [{"Pattern": json.dumps({"body": {"type": ["ship"]}})}]}
        lambda_.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=f"{name}-worker", **options)
    return f"sqs://{name}{suffix}?region=us-east-1&endpoint_url={moto_server}"


def app_for(url: str, *attempts: int, ordered: bool = False) -> cq.App:
    app = cq.App("shop", backend=url)
    for index, count in enumerate(attempts or (5, 3)):
        def job(payload: Order) -> None: ...
        app.job(name=f"job{index}", retry=cq.Retry(attempts=count),
                ordering_key="orders" if ordered and index == 0 else None)(job)
    return app


def found(report: Report) -> set[tuple[str, Severity]]:
    return {(f.check, f.severity) for f in report.findings}


def run(aws: dict[str, Any], moto_server: str, setup: Deployment, *attempts: int) -> Report:
    app = app_for(deploy(aws, moto_server, setup), *attempts)
    try:
        return diagnose(app)
    finally:
        app.close()


# -- a correct deployment -----------------------------------------------------------------------

def test_a_deployment_made_as_the_module_makes_it_has_no_findings(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment())
    assert report.findings == [], report.render()
    assert report.ok


def test_a_correct_fifo_deployment_needs_no_send_to_its_own_queue(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, replace(Deployment(fifo=True, send_to_queue=False, window=0, visibility=180)))
    assert report.findings == [], report.render()


# -- a broken one: every fault is reported --------------------------------------------------------

def test_a_broken_deployment_reports_each_fault_with_its_fix(aws: dict[str, Any], moto_server: str) -> None:
    broken = Deployment(max_receive_count=5, dlq_retention=86400, encrypted=False, wait=0, visibility=120,
                        report_failures=False, maximum_concurrency=None, reserved=5, filtered=True,
                        send_to_dlq=False, send_to_queue=False)
    report = run(aws, moto_server, broken)
    assert found(report) == {
        ("max receive count", Severity.ERROR),
        ("DLQ retention", Severity.ERROR),
        ("encryption", Severity.ERROR),
        ("long polling", Severity.WARNING),
        ("batch item failures", Severity.ERROR),
        ("visibility timeout", Severity.ERROR),
        ("filter criteria", Severity.WARNING),
        ("maximum concurrency", Severity.ERROR),
        ("dead-letter send", Severity.ERROR),
        ("send to own queue", Severity.ERROR),
    }, report.render()
    assert [f.found for f in report.findings if f.check == "encryption"] == [
        "the queue is not encrypted", "the dead-letter queue is not encrypted"]
    assert all(f.why for f in report.findings), "every finding says what goes wrong"
    by_check = {f.check: f for f in report.findings}
    assert "max_receive_count = 10: 5 attempts + 5 headroom" in by_check["max receive count"].fix
    assert "dlq_message_retention_seconds >= 345600" in by_check["DLQ retention"].fix
    assert "visibility_timeout_seconds >= 181" in by_check["visibility timeout"].fix
    assert "maximum_concurrency <= 5" in by_check["maximum concurrency"].fix
    assert "allow_send_to_queue = true" in by_check["send to own queue"].fix
    assert not report.ok


def test_a_receive_count_below_the_attempts_dead_letters_before_they_run(
        aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment(max_receive_count=3), 5)
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("max receive count", Severity.ERROR)
    assert finding.found == "maxReceiveCount 3, below the jobs' 5 attempts"
    assert "before its 5 attempts have run" in finding.why


def test_a_queue_without_a_redrive_policy_is_an_error(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment(max_receive_count=None))
    assert ("redrive policy", Severity.ERROR) in found(report)
    assert "dead-letter send" not in {f.check for f in report.findings}  # no DLQ to send to


def test_a_batching_window_the_visibility_timeout_does_not_cover(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment(visibility=180, window=5))
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("batch window", Severity.ERROR)
    assert "visibility_timeout_seconds >= 185" in finding.fix


def test_a_disabled_mapping_is_a_warning(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment(enabled=False))
    assert found(report) == {("mapping state", Severity.WARNING)}
    assert report.ok


def test_a_queue_no_function_reads_gets_a_note_only(aws: dict[str, Any], moto_server: str) -> None:
    report = run(aws, moto_server, Deployment(mapping=False))
    assert found(report) == {("event source mapping", Severity.NOTE)}
    assert report.ok


# -- the command ------------------------------------------------------------------------------------

def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> str:
    name = f"doctor_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import cloudqueue as cq
        from pydantic import BaseModel

        class Order(BaseModel):
            order_id: str

        app = cq.App("shop", backend={url!r})

        @app.job(retry=cq.Retry(attempts=5))
        def charge(payload: Order) -> None: ...
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:app"


def test_the_command_exits_0_and_says_so_when_all_is_well(
        aws: dict[str, Any], moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _module(tmp_path, monkeypatch, deploy(aws, moto_server, Deployment()))
    result = CliRunner().invoke(cli, ["doctor", spec])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no findings\n0 error(s), 0 warning(s) in 1 queue(s): sqs://doc-")


def test_the_command_prints_a_table_with_the_fixes_and_exits_1_on_an_error(
        aws: dict[str, Any], moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _module(tmp_path, monkeypatch, deploy(aws, moto_server, Deployment(max_receive_count=5, wait=0)))
    result = CliRunner().invoke(cli, ["doctor", spec])
    assert result.exit_code == 1, result.output
    queue, header, rule, *rows = result.stdout.splitlines()
    assert queue.startswith("sqs://doc-")
    assert header.split() == ["severity", "check", "found", "fix"]
    assert set(rule) == {"-", " "}
    assert rows[0].startswith("error") and "max receive count" in rows[0]
    assert any(row.startswith("warning") and "long polling" in row for row in rows)
    assert "max_receive_count = 10" in " ".join(" ".join(row.split()) for row in rows)
    assert rows[-1].startswith("1 error(s), 1 warning(s) in 1 queue(s)")
    assert "why:" not in result.stdout
    explained = CliRunner().invoke(cli, ["doctor", spec, "--explain"])
    assert "why: receives that never start a job" in " ".join(explained.stdout.split())


def test_a_queue_that_is_not_deployed_is_an_error_not_a_traceback(
        moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _module(tmp_path, monkeypatch, f"sqs://never-made?region=us-east-1&endpoint_url={moto_server}")
    result = CliRunner().invoke(cli, ["doctor", spec])
    assert result.exit_code == 1
    assert "reachable" in result.stdout and "QueueNotFound" in result.stdout
