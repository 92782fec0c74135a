"""`terraform fmt -check`: every .tf and .tfvars file is in canonical format."""

from __future__ import annotations

from .conftest import MOTO_LAMBDA_ROOT, MOTO_ROOT, TERRAFORM, Terraform


def test_every_terraform_file_is_formatted(terraform_cli: Terraform) -> None:
    for where in (TERRAFORM, MOTO_ROOT, MOTO_LAMBDA_ROOT):
        result = terraform_cli.run("fmt", "-check", "-recursive", "-diff", "-no-color", str(where),
                                   cwd=where, check=False)
        assert result.returncode == 0, f"run `terraform fmt -recursive {where}`:\n{result.stdout}"


def test_test_files_are_formatted_too(terraform_cli: Terraform) -> None:
    tests = sorted(TERRAFORM.glob("*/tests/*.tftest.hcl"))
    assert tests, "the AWS module's terraform tests are missing"
    for path in tests:
        result = terraform_cli.run("fmt", "-check", "-diff", "-no-color", str(path), cwd=path.parent,
                                   check=False)
        assert result.returncode == 0, f"run `terraform fmt {path}`:\n{result.stdout}"
