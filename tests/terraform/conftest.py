"""Offline checks of the Terraform modules: the tools they need, and a scratch copy to run in.

Every check runs on a copy of terraform/ in a temporary directory, so `terraform init`
never writes into the work tree. Tools that are missing skip loudly here and fail in CI
(tests.conftest.missing_component).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing_component

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = ("aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub")
EXAMPLES = ("aws", "gcp-cloud-tasks", "gcp-pubsub")
MOTO_ROOT = Path(__file__).resolve().parent / "moto_root"
MOTO_LAMBDA_ROOT = Path(__file__).resolve().parent / "moto_lambda_root"
#: where this machine image keeps the AWS provider for offline `terraform init`
DEFAULT_MIRROR = Path("/opt/tf-plugins")
#: checkov lives in its own virtualenv: it pins a python-hcl2 of its own
CHECKOV_VENV = REPO / ".venv-checkov"
CHECKOV_REQUIREMENT = "checkov>=3.2,<4"

INSTALL_TERRAFORM = ("install Terraform >= 1.9 as /usr/local/bin/terraform (HashiCorp's apt repository "
                     "or release zip), or point $TERRAFORM at a binary")


@dataclass
class Terraform:
    """A terraform binary, run with a CLI config that installs providers from the mirror only."""

    binary: str
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args], cwd=cwd, env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"terraform {' '.join(args)} in {cwd} failed ({result.returncode}):\n"
                        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}", pytrace=False)
        return result


def _terraform_binary() -> str:
    binary = os.environ.get("TERRAFORM") or shutil.which("terraform")
    if binary is None:
        missing_component("terraform", INSTALL_TERRAFORM)
    assert binary is not None
    out = subprocess.run([binary, "version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"Terraform v(\d+)\.(\d+)", out)
    if found is None or (int(found[1]), int(found[2])) < (1, 9):
        missing_component(f"terraform >= 1.9 (found: {out.splitlines()[:1]})", INSTALL_TERRAFORM)
    return binary


@pytest.fixture(scope="session")
def terraform_cli(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """terraform with no provider source but nothing: fmt needs no provider at all."""
    binary = _terraform_binary()
    home = tmp_path_factory.mktemp("terraform-cli")
    config = home / "cli.tfrc"
    config.write_text("# providers come from nowhere: fmt and structure checks need none\n")
    return Terraform(binary, _env(config))


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    """terraform whose `init` installs providers from the machine's filesystem mirror only."""
    binary = _terraform_binary()
    mirror = Path(os.environ.get("TF_PROVIDER_MIRROR", DEFAULT_MIRROR))
    if not any((mirror / "registry.terraform.io" / "hashicorp" / "aws").glob("5.*/*/terraform-provider-aws*")):
        missing_component(f"the AWS provider 5.x in a provider mirror at {mirror}",
                          "fill it with `terraform providers mirror DIR` on a connected machine, "
                          "or set $TF_PROVIDER_MIRROR")
    home = tmp_path_factory.mktemp("terraform-mirror")
    config = home / "cli.tfrc"
    # The test's own CLI config: ~/.terraformrc is never read or written.
    config.write_text('provider_installation {\n  filesystem_mirror {\n'
                      f'    path = "{mirror}"\n  }}\n}}\n')
    return Terraform(binary, _env(config))


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_CLI_CONFIG_FILE=str(config), TF_IN_AUTOMATION="1", TF_INPUT="0",
               CHECKPOINT_DISABLE="1")
    return env


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of terraform/ and of the moto roots beside it, to init and apply in."""
    root = tmp_path_factory.mktemp("tf")
    ignore = shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl", "build")
    shutil.copytree(TERRAFORM, root / "terraform", ignore=ignore)
    shutil.copytree(MOTO_ROOT, root / "moto_root", ignore=ignore)
    shutil.copytree(MOTO_LAMBDA_ROOT, root / "moto_lambda_root", ignore=ignore)
    return root


@pytest.fixture(scope="session")
def checkov() -> Iterator[Path]:
    """checkov, from $CHECKOV, or a virtualenv of its own at .venv-checkov (made if missing)."""
    given = os.environ.get("CHECKOV")
    if given:
        yield Path(given)
        return
    binary = CHECKOV_VENV / "bin" / "checkov"
    if not binary.exists():
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)],
                              capture_output=True, text=True, check=False)
        if made.returncode == 0:
            made = subprocess.run([str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install",
                                   "--quiet", CHECKOV_REQUIREMENT],
                                  capture_output=True, text=True, timeout=900, check=False)
        if made.returncode != 0 or not binary.exists():
            missing_component("checkov", f"its virtualenv could not be made ({made.stderr[-800:]}); "
                                         f"run: python -m venv .venv-checkov && "
                                         f".venv-checkov/bin/pip install '{CHECKOV_REQUIREMENT}', "
                                         "or set $CHECKOV")
    yield binary
