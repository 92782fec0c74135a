"""The GCP modules refuse, at plan, names and settings the services would refuse at apply.

No Google provider is available offline, so each check runs `terraform plan` on the
module's own variables.tf (variable validations need no provider) beside the module's
own name-deriving locals, copied from main.tf, exposed as outputs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import TERRAFORM, Terraform

pytestmark = pytest.mark.slow

ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")

REQUIRED = {
    "gcp-cloud-tasks": {"project": "acme-shop", "location": "europe-west1", "name": "orders",
                        "target_url": "https://example.com/run", "target_service": "orders-worker"},
    "gcp-pubsub": {"project": "acme-shop", "name": "orders", "push_endpoint": "https://example.com/push"},
}
DERIVED = {"gcp-cloud-tasks": ("invoker_account_id", "dead_letter_topic_name"),
           "gcp-pubsub": ("push_account_id", "dead_letter_name", "subscription_name")}


class Inputs:
    """A provider-free root: the module's variables.tf and its name-deriving locals."""

    def __init__(self, terraform: Terraform, root: Path, module: str) -> None:
        self.terraform, self.root, self.module = terraform, root, module
        root.mkdir()
        shutil.copy(TERRAFORM / module / "variables.tf", root / "variables.tf")
        main = (TERRAFORM / module / "main.tf").read_text()
        lines = []
        for name in DERIVED[module]:
            found = re.search(rf"^  {name}\s+= (.+)$", main, re.M)
            assert found, f"{module}/main.tf: no local {name}"
            lines.append(f"  {name} = {found[1]}")
        outputs = "".join(f'output "{n}" {{\n  value = local.{n}\n}}\n' for n in DERIVED[module])
        (root / "derived.tf").write_text("locals {\n" + "\n".join(lines) + "\n}\n" + outputs)
        terraform.run("init", "-no-color", cwd=root)

    def plan(self, **values: object) -> tuple[bool, str, dict[str, str]]:
        """(accepted, messages, derived names) for the module's inputs plus ``values``."""
        (self.root / "test.auto.tfvars.json").write_text(json.dumps({**REQUIRED[self.module], **values}))
        state = self.root / "terraform.tfstate"
        state.unlink(missing_ok=True)
        result = self.terraform.run("apply", "-auto-approve", "-no-color", "-input=false", cwd=self.root,
                                    check=False)
        if result.returncode != 0:
            return False, " ".join((result.stdout + result.stderr).split()), {}
        out = self.terraform.run("output", "-json", "-no-color", cwd=self.root).stdout
        return True, "", {k: v["value"] for k, v in json.loads(out).items()}


@pytest.fixture(scope="module")
def tasks(terraform_cli: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return Inputs(terraform_cli, tmp_path_factory.mktemp("inputs") / "tasks", "gcp-cloud-tasks")


@pytest.fixture(scope="module")
def pubsub(terraform_cli: Terraform, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return Inputs(terraform_cli, tmp_path_factory.mktemp("inputs") / "pubsub", "gcp-pubsub")


@pytest.mark.parametrize("name", ["orders", "Orders-EU", "a", "x" * 100, "orders-with-a-name-long-enough-to-cut"])
def test_cloud_tasks_derives_a_valid_invoker_account_from_any_queue_name(tasks: Inputs, name: str) -> None:
    accepted, why, names = tasks.plan(name=name)
    assert accepted, why
    assert ACCOUNT_ID.match(names["invoker_account_id"]), names
    assert names["dead_letter_topic_name"] == f"{name}-dead-letters"


@pytest.mark.parametrize(("values", "variable"), [
    ({"name": "1-orders"}, "name"),
    ({"invoker_account_id": "Orders_Invoker"}, "invoker_account_id"),
    ({"invoker_account_id": "inv"}, "invoker_account_id"),
    ({"dead_letter_topic_name": "goog-dead"}, "dead_letter_topic_name"),
    ({"max_attempts": -1, "max_retry_duration_seconds": 3600}, "max_retry_duration_seconds"),
    ({"target_url": "http://example.com/run"}, "target_url"),
    ({"schedules_target": "topic"}, "schedules_target"),
    ({"schedule_retry_count": 6}, "schedule_retry_count"),
    ({"schedule_attempt_deadline_seconds": 3600}, "schedule_attempt_deadline_seconds"),
])
def test_cloud_tasks_refuses_what_google_would_refuse_at_apply(
        tasks: Inputs, values: dict[str, object], variable: str) -> None:
    accepted, why, _ = tasks.plan(**values)
    assert not accepted
    assert f"var.{variable}" in why, why


@pytest.mark.parametrize("target", ["queue", "function"])
def test_cloud_tasks_schedules_go_to_the_queue_or_the_function(tasks: Inputs, target: str) -> None:
    accepted, why, _ = tasks.plan(schedules_target=target, schedule_retry_count=5,
                                  schedule_attempt_deadline_seconds=1800)
    assert accepted, why


def test_a_retry_duration_is_fine_when_max_attempts_bounds_the_task(tasks: Inputs) -> None:
    accepted, why, _ = tasks.plan(max_attempts=5, max_retry_duration_seconds=3600)
    assert accepted, why


@pytest.mark.parametrize("name", ["orders", "Orders.EU~v2", "abc", "o" * 242])
def test_pubsub_derives_a_valid_push_account_from_any_topic_name(pubsub: Inputs, name: str) -> None:
    accepted, why, names = pubsub.plan(name=name)
    assert accepted, why
    assert ACCOUNT_ID.match(names["push_account_id"]), names
    assert len(names["dead_letter_name"]) <= 255 and len(names["subscription_name"]) <= 255


@pytest.mark.parametrize(("values", "variable"), [
    ({"name": "o" * 243}, "name"),
    ({"name": "google-orders"}, "name"),
    ({"push_service_account_id": "push-"}, "push_service_account_id"),
    ({"message_retention_seconds": 604800, "dead_letter_retention_seconds": 86400},
     "dead_letter_retention_seconds"),
    ({"schedules_target": "queue"}, "schedules_target"),
    ({"schedule_retry_count": -1}, "schedule_retry_count"),
])
def test_pubsub_refuses_what_google_would_refuse_at_apply(
        pubsub: Inputs, values: dict[str, object], variable: str) -> None:
    accepted, why, _ = pubsub.plan(**values)
    assert not accepted
    assert f"var.{variable}" in why, why
