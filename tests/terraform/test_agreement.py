"""The receive limits agree everywhere they are written: the core's rule, the modules'
defaults, `cloudqueue terraform-vars` and `cloudqueue_aws.ensure_queue`."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from cloudqueue.retry import DEFAULT_RETRY, max_receives_for
from tests.conftest import missing_component

from .test_structure import config


def test_the_sqs_module_default_is_the_headroom_rule_for_the_default_attempts() -> None:
    variable = config("aws-sqs-lambda").variables["max_receive_count"]
    assert variable["default"] == max_receives_for(DEFAULT_RETRY.attempts) == DEFAULT_RETRY.max_receives


def test_the_pubsub_module_default_is_the_headroom_rule_for_the_default_attempts() -> None:
    variable = config("gcp-pubsub").variables["max_delivery_attempts"]
    assert variable["default"] == min(max_receives_for(DEFAULT_RETRY.attempts), 100)


def test_the_dlq_must_keep_messages_at_least_as_long_as_the_queue() -> None:
    checks = [v["condition"] for v in config("aws-sqs-lambda").variables["dlq_message_retention_seconds"]["validation"]]
    assert "${var.dlq_message_retention_seconds >= var.message_retention_seconds}" in checks


@pytest.fixture
def sqs(moto_server: str) -> Any:
    try:
        import boto3
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-aws and boto3", 'pip install -e "adapters/aws[test]"')
    client = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    yield client
    client.close()


def test_ensure_queue_defaults_to_the_same_receive_limit(sqs: Any) -> None:
    from cloudqueue_aws import ensure_queue

    pair = ensure_queue(f"agree-{uuid.uuid4().hex[:8]}", client=sqs)
    attributes = sqs.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == cq.Retry().max_receives
    dlq = sqs.get_queue_attributes(QueueUrl=pair.dead_letter_url, AttributeNames=["All"])["Attributes"]
    assert int(dlq["MessageRetentionPeriod"]) >= int(attributes["MessageRetentionPeriod"])


def test_ensure_queue_refuses_a_dlq_that_forgets_sooner_than_its_queue(sqs: Any) -> None:
    from cloudqueue_aws import ensure_queue

    with pytest.raises(cq.ConfigurationError, match=r"dead_letter_retention .* is shorter than retention"):
        ensure_queue("agree-short-dlq", client=sqs, retention=timedelta(days=4),
                     dead_letter_retention=timedelta(days=1))
    assert "agree-short-dlq" not in json.dumps(sqs.list_queues(QueueNamePrefix="agree-short"))
