"""The adapter's surface: URLs, entry points, exports, recorded events, the consume-path budget, the CLI."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cloudqueue_gcp
import pytest
from click.testing import CliRunner
from cloudqueue_gcp.handlers import ShimSettings, cloud_tasks_delivery, pubsub_delivery
from cloudqueue_gcp.pubsub import PubSubBackend
from cloudqueue_gcp.tasks import CloudTasksBackend, QueueDeadLetters
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends import from_url, registered_schemes
from cloudqueue.cli import cli

from . import routing
from .conftest import SERVICE_ACCOUNT, TasksSetup

EVENTS = Path(__file__).parents[1] / "events" / "gcp"
SETTINGS = ShimSettings(auth=None, timeout=timedelta(seconds=60), dispatch_deadline=timedelta(minutes=10),
                        push_ack_deadline=timedelta(seconds=10))


class Order(BaseModel):
    order_id: str


def test_both_schemes_are_registered_through_entry_points() -> None:
    assert {"cloudtasks", "pubsub"} <= set(registered_schemes())


def test_all_is_explicit_and_complete() -> None:
    assert sorted(cloudqueue_gcp.__all__) == ["AuthError", "PushAuth", "PushRefused",
                                              "cloudevent_handler", "http_handler"]
    for name in cloudqueue_gcp.__all__:
        assert hasattr(cloudqueue_gcp, name)


def test_cloudtasks_url_as_terraform_writes_it() -> None:
    backend = from_url("cloudtasks://acme/europe-west1/jobs?target=https://fn.example/run"
                       f"&service_account={SERVICE_ACCOUNT}&audience=https://fn.example/"
                       "&dead_letter=cloudtasks://acme/europe-west1/jobs-dead&dispatch_deadline=300")
    assert isinstance(backend, CloudTasksBackend)
    assert backend.queue_path == "projects/acme/locations/europe-west1/queues/jobs"
    assert (backend.target, backend.service_account, backend.audience) == (
        "https://fn.example/run", SERVICE_ACCOUNT, "https://fn.example/")
    assert backend.dispatch_deadline == timedelta(seconds=300)
    caps = backend.capabilities
    assert (caps.pull, caps.push, caps.dedup, caps.delay_hops, caps.max_delay) == (
        False, True, True, True, timedelta(days=30))
    assert isinstance(backend._dead, QueueDeadLetters)


def test_pubsub_url_as_terraform_writes_it() -> None:
    backend = from_url("pubsub://acme/jobs?subscription=jobs-worker&dead_letter_topic=jobs-dead")
    assert isinstance(backend, PubSubBackend)
    assert backend.topic_path == "projects/acme/topics/jobs"
    assert backend.subscription_path == "projects/acme/subscriptions/jobs-worker"
    caps = backend.capabilities
    assert (caps.pull, caps.push, caps.visibility, caps.max_delay, caps.delay_hops) == (
        True, True, True, timedelta(0), False)


@pytest.mark.parametrize(("url", "message"), [
    ("cloudtasks://acme/jobs", "PROJECT/LOCATION/QUEUE"),
    ("cloudtasks://acme/eu/jobs?targte=https://x", "did you mean 'target'"),
    ("cloudtasks://acme/eu/jobs?dead_letter=sqs://q", "pubsub:// or cloudtasks://"),
    ("pubsub://acme", "PROJECT/TOPIC"),
    ("pubsub://acme/jobs?subscripton=s", "did you mean 'subscription'"),
    ("pubsub://acme/jobs?ordering=maybe", "not a boolean"),
])
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        from_url(url)


def test_opening_a_url_imports_no_google_sdk() -> None:
    code = ("import sys; from cloudqueue.backends import from_url;"
            "from_url('cloudtasks://p/l/q?target=https://x&dead_letter=pubsub://p/t');"
            "from_url('pubsub://p/t?subscription=s');"
            "print([m for m in sys.modules if m.startswith(('google.cloud.tasks', 'google.cloud.pubsub', 'grpc'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_recorded_cloud_tasks_headers_make_a_delivery() -> None:
    headers = json.loads((EVENTS / "cloudtasks_headers.json").read_text())
    started = datetime(2026, 11, 27, 22, 0, tzinfo=timezone.utc)
    delivery = cloud_tasks_delivery(headers, b"{}", SETTINGS, started)
    assert delivery.attempt == 3  # TaskRetryCount 2 + 1
    assert delivery.message_id == headers["X-CloudTasks-TaskName"]
    assert delivery.attributes["queue"] == "jobs" and delivery.attributes["previous_response"] == "500"
    assert delivery.deadline == started + timedelta(seconds=60)  # the shorter of timeout and dispatch deadline


def test_recorded_push_bodies_make_deliveries() -> None:
    push = json.loads((EVENTS / "pubsub_push.json").read_text())
    push["message"]["data"] = base64.b64encode(b'{"x": 1}').decode()
    started = datetime(2026, 11, 27, 22, 0, tzinfo=timezone.utc)
    delivery = pubsub_delivery(push, SETTINGS, started)
    assert (delivery.attempt, delivery.message_id, delivery.body) == (3, "2070443601311540", b'{"x": 1}')
    assert delivery.attributes["cq_type"] == "charge"
    assert delivery.deadline == started + timedelta(seconds=10)
    emulator = json.loads((EVENTS / "pubsub_push_emulator.json").read_text())
    assert pubsub_delivery(emulator, SETTINGS, started).attempt == 1  # no deliveryAttempt sent
    eventarc = json.loads((EVENTS / "eventarc_pubsub_structured.json").read_text())
    assert pubsub_delivery(eventarc["data"], SETTINGS, started).attempt == 2


_CONSUME = """
import sys, json
import cloudqueue as cq
import cloudqueue_gcp
from pydantic import BaseModel

class Order(BaseModel):
    order_id: str

app = cq.App("shop", backend="cloudtasks://p/europe-west1/jobs?target={url}&service_account={account}")

@app.job
def charge(payload: Order) -> None:
    pass

handler = cloudqueue_gcp.http_handler(app, certs_url="{certs}")

class Request:
    headers = {{"Authorization": "Bearer {token}", "X-CloudTasks-QueueName": "jobs",
               "X-CloudTasks-TaskName": "t1", "X-CloudTasks-TaskRetryCount": "0"}}
    def get_data(self):
        return charge.message(Order(order_id="o-1")).body

print(json.dumps([handler(Request())[1],
                  sorted(m for m in sys.modules if m.startswith(("google.cloud.", "google.api_core", "grpc")))]))
"""


def test_the_push_consume_path_imports_no_cloud_client_library(issuer: Any) -> None:
    url = "https://fn.example/run"
    code = _CONSUME.format(url=url, account=SERVICE_ACCOUNT, certs=issuer.certs_url,
                           token=issuer.token(url, SERVICE_ACCOUNT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, loaded = json.loads(out.stdout)
    assert status == 200
    assert loaded == []


def test_dead_letters_are_listed_redriven_and_purged_through_the_cli(
        queues: TasksSetup, http_function: Any, issuer: Any) -> None:
    url = queues.url(http_function.url)
    app = cq.App("shop", backend=url)
    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no stock")

    refuse.enqueue_many([Order(order_id="a"), Order(order_id="b")])
    queues.server.dispatch_due()
    runner = CliRunner()
    listed = runner.invoke(cli, ["dead-letters", "list", url, "--json"])
    assert listed.exit_code == 0, listed.output
    letters = [json.loads(line) for line in listed.output.splitlines()]
    assert [(x["job_type"], x["reason"]) for x in letters] == [("refuse", "permanent: no stock")] * 2
    redriven = runner.invoke(cli, ["dead-letters", "redrive", url, "--id", letters[0]["message_id"]])
    assert redriven.exit_code == 0 and "redrove 1" in redriven.output
    stats = runner.invoke(cli, ["stats", url])
    assert stats.exit_code == 0, stats.output
    purged = runner.invoke(cli, ["dead-letters", "purge", url, "--yes"])
    assert purged.exit_code == 0 and "purged 1" in purged.output
