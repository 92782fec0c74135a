"""The Cloud Tasks queue pins every task's URL and OIDC token (queue-level http_target).

Without it, anyone allowed to enqueue (and to act as the invoker, which setting a task's
token needs) can send invoker-signed requests to any URL or audience. The module splits
target_url into the parts of a uri_override; `terraform console` evaluates that split
(no provider needed) and the parts must put the URL back together.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import TERRAFORM, Terraform
from .test_structure import config

MODULE = TERRAFORM / "gcp-cloud-tasks"


def _pattern() -> str:
    found = re.search(r'^  target = regex\("(.*)", var\.target_url\)$', (MODULE / "main.tf").read_text(), re.M)
    assert found, "gcp-cloud-tasks/main.tf: no `target = regex(\"...\", var.target_url)` in locals"
    return found[1]


def split(terraform: Terraform, workdir: Path, url: str) -> dict[str, str | None] | None:
    """The module's parts of ``url``, or None when the module's pattern refuses it."""
    expression = f'try(jsonencode(regex("{_pattern()}", "{url}")), "refused")'
    done = subprocess.run([terraform.binary, "console"], input=expression + "\n", cwd=workdir,
                          env=terraform.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout.strip())
    return None if value == "refused" else dict(json.loads(value))


def as_cloud_tasks_sends(parts: dict[str, str | None]) -> str:
    """The URL a task goes to with the module's uri_override (scheme HTTPS, path "/" if none)."""
    port = f":{parts['port']}" if parts["port"] else ""
    query = f"?{parts['query']}" if parts["query"] is not None else ""
    return f"https://{parts['host']}{port}{parts['path'] or '/'}{query}"


@pytest.mark.parametrize("url", [
    "https://europe-west1-acme-shop.cloudfunctions.net/orders-worker",
    "https://orders-worker-abc123-ew.a.run.app/",
    "https://jobs.example.com:8443/hooks/cloudqueue?from=tasks&x=1",
])
def test_the_queue_sends_every_task_to_target_url(terraform_cli: Terraform, tmp_path: Path, url: str) -> None:
    parts = split(terraform_cli, tmp_path, url)
    assert parts is not None
    assert as_cloud_tasks_sends(parts) == url


def test_a_bare_host_is_sent_to_its_root(terraform_cli: Terraform, tmp_path: Path) -> None:
    parts = split(terraform_cli, tmp_path, "https://jobs.example.com")
    assert parts is not None and as_cloud_tasks_sends(parts) == "https://jobs.example.com/"


@pytest.mark.parametrize("url", ["http://jobs.example.com/", "https://user@jobs.example.com/",
                                 "https://jobs.example.com/#part", "jobs.example.com/"])
def test_target_urls_the_queue_cannot_pin_are_refused(terraform_cli: Terraform, tmp_path: Path, url: str) -> None:
    assert split(terraform_cli, tmp_path, url) is None
    [*_, check] = config("gcp-cloud-tasks").variables["target_url"]["validation"]
    assert _pattern() in check["condition"].replace("\\\\", "\\")


def test_the_queue_enforces_the_uri_and_the_invoker_token() -> None:
    queue = config("gcp-cloud-tasks").resource("google_cloud_tasks_queue", "this")
    [target] = queue["http_target"]
    assert target["http_method"] == "POST"
    [uri] = target["uri_override"]
    assert (uri["scheme"], uri["uri_override_enforce_mode"]) == ("HTTPS", "ALWAYS")
    assert (uri["host"], uri["port"]) == ("${local.target.host}", "${local.target.port}")
    assert uri["path_override"] == [{"path": '${coalesce(local.target.path, "/")}'}]
    [oidc] = target["oidc_token"]
    assert oidc == {"service_account_email": "${google_service_account.invoker.email}",
                    "audience": "${local.audience}"}
