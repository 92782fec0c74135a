"""The AWS module with its function and event source mapping, applied to moto server from
nothing in one `terraform apply`; then `cloudqueue doctor` reads what it made.

The root (tests/terraform/moto_lambda_root) wires the function as terraform/examples/aws
does: the mapping takes the function's attribute, so Terraform creates the function
first (Lambda refuses a mapping to a function that does not exist yet). Nothing is sent
to the queue: moto would run the mapped function in docker.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.doctor import Severity, diagnose
from tests.conftest import missing_component

from .conftest import Terraform

pytestmark = pytest.mark.slow

ATTEMPTS = 3


class Order(BaseModel):
    order_id: str


@pytest.fixture(scope="module")
def applied(terraform: Terraform, scratch: Path, moto_server: str) -> dict[str, Any]:
    root = scratch / "moto_lambda_root"
    package = root / "package.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {'batchItemFailures': []}\n")
    name = f"tf-lambda-{uuid.uuid4().hex[:8]}"
    terraform.run("init", "-no-color", cwd=root)
    terraform.run("apply", "-auto-approve", "-no-color", "-var", f"endpoint={moto_server}", "-var", f"name={name}",
                  "-var", f"max_receive_count={cq.Retry(attempts=ATTEMPTS).max_receives}",
                  "-var", f"package_zip={package}", cwd=root, timeout=900)
    outputs = json.loads(terraform.run("output", "-json", "-no-color", cwd=root).stdout)
    return {key: item["value"] for key, item in outputs.items()}


def app_for(applied: dict[str, Any], moto_server: str, attempts: int) -> cq.App:
    try:
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-aws (the SQS checks)", "pip install -e adapters/aws")
    app = cq.App("orders", backend=f"{applied['cloudqueue_url']}&endpoint_url={moto_server}")

    @app.job(retry=cq.Retry(attempts=attempts))
    def ship(payload: Order) -> None: ...

    return app


def test_one_apply_creates_the_function_then_its_mapping(applied: dict[str, Any], moto_server: str) -> None:
    import boto3

    lambda_ = boto3.client("lambda", endpoint_url=moto_server, region_name="us-east-1")
    [mapping] = lambda_.list_event_source_mappings(FunctionName=applied["function_name"])["EventSourceMappings"]
    assert mapping["UUID"] == applied["event_source_mapping_uuid"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_doctor_finds_nothing_to_fix_in_what_the_module_made(applied: dict[str, Any], moto_server: str) -> None:
    app = app_for(applied, moto_server, ATTEMPTS)
    try:
        report = diagnose(app)
    finally:
        app.close()
    assert report.findings == [], report.render()


def test_the_doctor_sees_the_jobs_outgrow_the_deployed_receive_limit(
        applied: dict[str, Any], moto_server: str) -> None:
    app = app_for(applied, moto_server, 5)  # the code changed; the queue did not
    try:
        report = diagnose(app)
    finally:
        app.close()
    [finding] = report.findings
    assert (finding.check, finding.severity) == ("max receive count", Severity.ERROR)
    assert finding.fix.startswith("max_receive_count = 10")
