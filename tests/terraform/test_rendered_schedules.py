"""What `cloudqueue terraform-vars` prints for schedules and limits is fmt-clean HCL that the
modules take as it is (the AWS module planned and applied on a mocked provider)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import render_tfvars

from .conftest import Terraform

#: the note of the daily schedule as it reads inside the body (JSON), as an HCL string
QUOTED = r'"a \\\"quoted\\\" $${x} %%{y}"'
MOCKS = Path(__file__).resolve().parents[2] / "terraform" / "aws-sqs-lambda" / "tests" / "module.tftest.hcl"


class Report(BaseModel):
    kind: str
    note: str = ""


def scheduled_app() -> cq.App:
    app = cq.App("shop")

    @app.job(concurrency=4, rate_limit="2/s", schedule=[
        cq.Cron("0 3 * * *", tz="Europe/Berlin", payload={"kind": "daily", "note": 'a "quoted" ${x} %{y}'},
                name="daily"),
        cq.Cron("*/15 9-17 * * mon-fri", payload={"kind": "often"}, name="often")])
    def nightly(payload: Report) -> None: ...

    return app


@pytest.mark.parametrize("module", ["aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub"])
def test_rendered_schedules_and_limits_are_fmt_clean(terraform_cli: Terraform, tmp_path: Path, module: str) -> None:
    path = tmp_path / "app.auto.tfvars"
    path.write_text(render_tfvars(scheduled_app(), module))
    result = terraform_cli.run("fmt", "-check", "-diff", "-no-color", str(path), cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_the_aws_module_creates_the_rendered_schedules(terraform: Terraform, tmp_path: Path) -> None:
    # a copy of its own: the session's scratch copy runs every test file it holds
    module = tmp_path / "aws-sqs-lambda"
    shutil.copytree(MOCKS.parents[1], module, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*",
                                                                             ".terraform.lock.hcl"))
    rendered = render_tfvars(scheduled_app(), "aws-sqs-lambda")
    (module / "rendered.tfvars").write_text(rendered + 'name = "shop"\nfunction_name = "shop-worker"\n')
    mock = MOCKS.read_text().split("\nvariables {", 1)[0]  # the mocked provider, without the runs
    (module / "tests" / "rendered.tftest.hcl").write_text(mock + '''
run "rendered_schedules" {
  command = apply

  assert {
    condition     = length(aws_scheduler_schedule.this) == 2
    error_message = "one schedule per cq.Cron"
  }

  assert {
    condition     = aws_scheduler_schedule.this["nightly-often"].schedule_expression == "cron(*/15 9-17 ? * 2-6 *)"
    error_message = "the EventBridge expression as rendered"
  }

  assert {
    condition     = strcontains(aws_scheduler_schedule.this["nightly-daily"].target[0].input, QUOTED)
    error_message = "the body survives HCL quoting"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].scaling_config[0].maximum_concurrency == 4
    error_message = "concurrency becomes the mapping's maximum_concurrency"
  }
}
'''.replace("QUOTED", QUOTED))
    terraform.run("init", "-backend=false", "-no-color", cwd=module)
    result = terraform.run("test", "-no-color", "-filter=tests/rendered.tftest.hcl", "-var-file=rendered.tfvars",
                           cwd=module, check=False)
    summary = re.search(r"(\d+) passed, (\d+) failed", result.stdout)
    assert result.returncode == 0 and summary and summary.groups() == ("1", "0"), (
        result.stdout[-4000:] + result.stderr[-2000:])
