"""The AWS module and example root initialise from the provider mirror, validate, and pass
their `terraform test` runs on a mocked provider."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Terraform

pytestmark = pytest.mark.slow


def init(terraform: Terraform, root: Path) -> None:
    result = terraform.run("init", "-backend=false", "-no-color", cwd=root)
    assert "hashicorp/aws v5." in result.stdout, result.stdout


def test_aws_module_initialises_from_the_mirror_and_validates(terraform: Terraform, scratch: Path) -> None:
    module = scratch / "terraform" / "aws-sqs-lambda"
    init(terraform, module)
    result = terraform.run("validate", "-no-color", cwd=module)
    assert "The configuration is valid" in result.stdout


def test_aws_module_passes_its_terraform_tests_on_a_mocked_provider(
        terraform: Terraform, scratch: Path) -> None:
    module = scratch / "terraform" / "aws-sqs-lambda"
    init(terraform, module)
    result = terraform.run("test", "-no-color", cwd=module, check=False)
    summary = re.search(r"(\d+) passed, (\d+) failed", result.stdout)
    assert result.returncode == 0 and summary, result.stdout[-4000:] + result.stderr[-2000:]
    passed, failed = int(summary[1]), int(summary[2])
    assert failed == 0 and passed >= 9, result.stdout


def test_aws_example_root_validates(terraform: Terraform, scratch: Path) -> None:
    root = scratch / "terraform" / "examples" / "aws"
    init(terraform, root)
    result = terraform.run("validate", "-no-color", cwd=root)
    assert "The configuration is valid" in result.stdout

