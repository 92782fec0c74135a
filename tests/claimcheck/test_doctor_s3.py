"""`cloudqueue doctor` checks the claim check's S3 bucket: it exists, a lifecycle rule on
the prefix outlives the queue's and the dead-letter queue's retention, and the consuming
function may read and delete under the prefix. SQS, Lambda, IAM and S3 on moto server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import cloudqueue as cq
from cloudqueue.doctor import Finding, Severity, diagnose
from tests.aws.test_doctor import FOURTEEN_DAYS, Deployment, aws, deploy

__all__ = ["aws"]

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def bucket(aws: dict[str, Any], moto_server: str) -> Iterator[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    aws["s3"] = s3
    name = f"payloads-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    s3.delete_bucket(Bucket=name)
    s3.close()


def expire(aws: dict[str, Any], bucket: str, days: int, prefix: str = "jobs/") -> None:
    aws["s3"].put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "cloudqueue-payloads-expire", "Status": "Enabled", "Filter": {"Prefix": prefix},
        "Expiration": {"Days": days}}]})


def grant(aws: dict[str, Any], url: str, bucket: str, actions: list[str]) -> None:
    """The module's ReadPayloads statement on the function's role."""
    name = urlsplit(url).netloc
    aws["iam"].put_role_policy(RoleName=f"{name}-consumer", PolicyName="payloads", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Sid": "ReadPayloads", "Effect": "Allow", "Action": actions,
                                                "Resource": f"arn:aws:s3:::{bucket}/jobs/*"}]}))


def payload_findings(url: str, bucket: str, moto_server: str) -> list[Finding]:
    endpoint = parse_qs(urlsplit(url).query)["endpoint_url"][0]
    app = cq.App("shop", backend=url,
                 payload_store=f"s3://{bucket}/jobs?region=us-east-1&endpoint_url={endpoint}")

    @app.job(retry=cq.Retry(attempts=5))
    def ingest(payload: dict[str, str]) -> None: ...

    try:
        report = diagnose(app)
    finally:
        app.close()
    assert f"payload store s3://{bucket}/jobs" in report.checked
    return [f for f in report.findings if f.queue.startswith("payload store")]


def test_a_bucket_made_as_the_module_makes_it_has_no_findings(aws: dict[str, Any], moto_server: str,
                                                              bucket: str) -> None:
    url = deploy(aws, moto_server, Deployment())
    expire(aws, bucket, 19)  # 4 days in the queue + 14 in the DLQ + 1
    grant(aws, url, bucket, ["s3:GetObject", "s3:DeleteObject"])
    assert payload_findings(url, bucket, moto_server) == []


def test_a_rule_shorter_than_both_retentions_is_an_error_naming_the_days(aws: dict[str, Any], moto_server: str,
                                                                         bucket: str) -> None:
    url = deploy(aws, moto_server, Deployment(retention=FOURTEEN_DAYS))
    expire(aws, bucket, 19)
    grant(aws, url, bucket, ["s3:GetObject", "s3:DeleteObject"])
    [finding] = payload_findings(url, bucket, moto_server)
    assert (finding.check, finding.severity) == ("lifecycle rule", Severity.ERROR)
    assert "expire after 19 days" in finding.found and "14 d 0 h in the queue" in finding.found
    assert "at least 29 days" in finding.fix and "max_delay_days" in finding.fix


def test_no_rule_on_the_prefix_is_a_warning(aws: dict[str, Any], moto_server: str, bucket: str) -> None:
    url = deploy(aws, moto_server, Deployment())
    grant(aws, url, bucket, ["s3:GetObject", "s3:DeleteObject"])
    [finding] = payload_findings(url, bucket, moto_server)
    assert (finding.check, finding.severity) == ("lifecycle rule", Severity.WARNING)
    expire(aws, bucket, 30, prefix="other/")  # a rule, but on another prefix
    [finding] = payload_findings(url, bucket, moto_server)
    assert finding.severity is Severity.WARNING and f"s3://{bucket}/jobs/" in finding.found


def test_a_function_that_cannot_read_or_delete_is_an_error(aws: dict[str, Any], moto_server: str,
                                                           bucket: str) -> None:
    url = deploy(aws, moto_server, Deployment())
    expire(aws, bucket, 19)
    [finding] = payload_findings(url, bucket, moto_server)
    assert (finding.check, finding.severity) == ("function grants", Severity.ERROR)
    assert "no s3:GetObject or s3:DeleteObject" in finding.found and "ReadPayloads" in finding.fix
    grant(aws, url, bucket, ["s3:GetObject"])
    [finding] = payload_findings(url, bucket, moto_server)
    assert "no s3:DeleteObject" in finding.found and "never deleted" in finding.why


def test_a_missing_bucket_is_an_error(aws: dict[str, Any], moto_server: str) -> None:
    url = deploy(aws, moto_server, Deployment())
    [finding] = payload_findings(url, "no-such-payloads", moto_server)
    assert (finding.check, finding.severity) == ("bucket", Severity.ERROR)
    assert "payload_bucket" in finding.fix


def test_a_worker_consumed_queue_checks_the_bucket_and_skips_the_grants(aws: dict[str, Any], moto_server: str,
                                                                        bucket: str) -> None:
    url = deploy(aws, moto_server, Deployment(mapping=False))
    expire(aws, bucket, 19)
    assert payload_findings(url, bucket, moto_server) == []
