"""The GCP modules' `cloudqueue_url` opens in the library as the queue the module made.

The Google provider is not available offline, so each module's URL expression is
evaluated by `terraform console` with the resources' attributes stood in by the values
a real apply gives them, and the result is opened with the adapter's own URL parser.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_component

from .conftest import TERRAFORM, Terraform

PROJECT = "acme-shop"
LOCATION = "europe-west1"
TARGET = "https://europe-west1-acme-shop.cloudfunctions.net/orders-worker?from=tasks&x=1"


def evaluate(terraform: Terraform, workdir: Path, module: str, values: dict[str, str | bool]) -> str:
    """The module's ``local.cloudqueue_url`` with its references replaced by ``values``."""
    source = (TERRAFORM / module / "main.tf").read_text()
    found = re.search(r"^  cloudqueue_url = (join\(\"\", \[\n.*?\n  \]\))$", source, re.M | re.S)
    assert found, f"{module}/main.tf: no cloudqueue_url = join(...) in locals"
    expression = found[1]
    references = set(re.findall(r"\b(?:var|local|google_\w+)\.[\w.]+", expression))
    assert references <= set(values), f"stand-ins missing for {references - set(values)}"
    for reference in sorted(values, key=len, reverse=True):
        expression = expression.replace(reference, _hcl(values[reference]))
    # No provider and no state: console evaluates the functions (join, urlencode) alone.
    done = subprocess.run([terraform.binary, "console"], input=" ".join(expression.split()) + "\n",
                          cwd=workdir, env=terraform.env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    value = done.stdout.strip()
    assert value.startswith('"') and value.endswith('"'), value
    return str(value[1:-1].replace('\\"', '"'))


def _hcl(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${") + '"'


def _gcp() -> Any:
    try:
        import cloudqueue_gcp
    except ImportError:
        missing_component("cloudqueue-gcp (the Cloud Tasks and Pub/Sub backends)",
                          "pip install -e adapters/gcp")
    return cloudqueue_gcp


def test_cloud_tasks_url_opens_as_the_module_queue_invoker_and_dead_letter_topic(
        terraform_cli: Terraform, tmp_path: Path) -> None:
    _gcp()
    from cloudqueue_gcp.tasks import from_url

    invoker = f"orders-invoker@{PROJECT}.iam.gserviceaccount.com"
    url = evaluate(terraform_cli, tmp_path, "gcp-cloud-tasks", {
        "var.project": PROJECT, "var.location": LOCATION, "var.target_url": TARGET,
        "local.audience": TARGET, "google_cloud_tasks_queue.this.name": "orders",
        "google_service_account.invoker.email": invoker,
        "google_pubsub_topic.dead_letters.name": "orders-dead-letters",
        "google_pubsub_subscription.dead_letters.name": "orders-dead-letters",
    })
    assert url.startswith(f"cloudtasks://{PROJECT}/{LOCATION}/orders?target=")
    backend = from_url(url)
    assert (backend.project, backend.location, backend.queue) == (PROJECT, LOCATION, "orders")
    assert backend.target == TARGET  # a query string of its own survives
    assert backend.service_account == invoker
    assert backend.audience == TARGET
    dead = backend._dead
    assert dead.topic == f"projects/{PROJECT}/topics/orders-dead-letters"
    assert dead.subscription == f"projects/{PROJECT}/subscriptions/orders-dead-letters"


@pytest.mark.parametrize("ordering", [False, True])
def test_pubsub_url_opens_as_the_module_topic_subscription_and_dead_letter_topic(
        terraform_cli: Terraform, tmp_path: Path, ordering: bool) -> None:
    _gcp()
    from cloudqueue_gcp.pubsub import from_url

    url = evaluate(terraform_cli, tmp_path, "gcp-pubsub", {
        "var.project": PROJECT, "google_pubsub_topic.this.name": "orders",
        "google_pubsub_subscription.push.name": "orders-push",
        "google_pubsub_topic.dead_letters.name": "orders-dead-letters",
        "var.enable_message_ordering": ordering,
    })
    expected = f"pubsub://{PROJECT}/orders?subscription=orders-push&dead_letter_topic=orders-dead-letters"
    assert url == expected + ("&ordering=true" if ordering else "")
    backend = from_url(url)
    assert backend.topic_path == f"projects/{PROJECT}/topics/orders"
    assert backend.subscription_path == f"projects/{PROJECT}/subscriptions/orders-push"
    assert backend._dead.topic == f"projects/{PROJECT}/topics/orders-dead-letters"
    assert backend.capabilities.fifo is ordering
