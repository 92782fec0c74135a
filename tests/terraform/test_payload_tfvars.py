"""What `cloudqueue terraform-vars` prints for an app with a payload store plans in the AWS
module (mocked provider): the bucket, the prefix the app writes under, and a lifecycle
rule that outlives the queue's and the dead-letter queue's retention."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import render_tfvars

from .conftest import TERRAFORM, Terraform

pytestmark = pytest.mark.slow

MODULE = TERRAFORM / "aws-sqs-lambda"


class Order(BaseModel):
    order_id: str


def test_the_printed_payload_bucket_plans_in_the_aws_module(terraform: Terraform, tmp_path: Path) -> None:
    app = cq.App("shop", payload_store="s3://shop-payloads/orders?region=eu-west-1")

    @app.job(retry=cq.Retry(attempts=4))
    def ship(payload: Order) -> None: ...

    module = tmp_path / "aws-sqs-lambda"
    shutil.copytree(MODULE, module, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*",
                                                                 ".terraform.lock.hcl", "build"))
    (module / "terraform.tfvars").write_text(render_tfvars(app, "aws-sqs-lambda"))
    header = (MODULE / "tests" / "module.tftest.hcl").read_text().split("\nvariables {", 1)[0]
    (module / "tests" / "module.tftest.hcl").unlink()
    (module / "tests" / "tfvars.tftest.hcl").write_text(header + '''
variables {
  name          = "orders"
  function_name = "orders-worker"
}

run "payload_bucket_from_terraform_vars" {
  command = apply

  assert {
    condition     = aws_s3_bucket.payloads[0].bucket == "shop-payloads"
    error_message = "the bucket the app's payload_store names"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.payloads[0].rule[0].filter[0].prefix == "orders/"
    error_message = "the rule covers the prefix the app writes under"
  }

  # 4 days in the queue + 14 in the DLQ + 1
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.payloads[0].rule[0].expiration[0].days == 19
    error_message = "the rule outlives both retentions"
  }

  assert {
    condition     = output.payload_store_url == "s3://shop-payloads/orders?region=eu-west-1"
    error_message = "the module's payload_store_url is the app's"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy).maxReceiveCount == 9
    error_message = "the rest of the printed values apply too"
  }
}
''')
    terraform.run("init", "-backend=false", "-no-color", cwd=module)
    result = terraform.run("test", "-no-color", cwd=module, check=False)
    summary = re.search(r"(\d+) passed, (\d+) failed", result.stdout)
    assert result.returncode == 0 and summary, result.stdout[-4000:] + result.stderr[-2000:]
    assert (int(summary[1]), int(summary[2])) == (1, 0), result.stdout
