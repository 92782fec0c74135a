"""``ensure_queue``: a queue and its dead-letter queue, for local work and tests.

Production queues come from the Terraform module (terraform/aws-sqs-lambda), which
sets the same attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from cloudqueue import ConfigurationError
from cloudqueue.retry import DEFAULT_RETRY

from ._client import make_client
from ._errors import error_code, translated

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

__all__ = ["QueuePair", "ensure_queue"]

_EXISTS = frozenset({"QueueAlreadyExists", "AWS.SimpleQueueService.QueueNameExists", "QueueNameExists"})


@dataclass(frozen=True, slots=True)
class QueuePair:
    """A queue and its dead-letter queue."""

    url: str
    arn: str
    dead_letter_url: str
    dead_letter_arn: str

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


def ensure_queue(name: str, *, client: SQSClient | None = None, region: str | None = None,
                 endpoint_url: str | None = None, max_receive_count: int | None = None,
                 visibility_timeout: timedelta = timedelta(seconds=30),
                 dead_letter_name: str | None = None,
                 retention: timedelta = timedelta(days=14),
                 dead_letter_retention: timedelta | None = None) -> QueuePair:
    """Create (or update) a queue and its dead-letter queue; safe to call again.

    The queue gets a RedrivePolicy (``maxReceiveCount``) naming the dead-letter queue,
    and the dead-letter queue a RedriveAllowPolicy naming only this queue. A name ending
    in ``.fifo`` makes both FIFO queues.

    Args:
        name: the queue's name (``orders`` or ``orders.fifo``).
        client: a boto3 SQS client (default: one from ``region`` and ``endpoint_url``).
        max_receive_count: receives before SQS itself moves a message to dead letters.
            Default: ``cq.Retry().max_receives`` (8), the headroom rule for the default
            attempts; for other jobs pass ``job.retry.max_receives`` of the one with the
            most attempts, as ``cloudqueue terraform-vars`` and the Terraform module do.
        dead_letter_name: default ``<name>-dlq`` (``<name>-dlq.fifo`` for FIFO).
        retention: how long the queue keeps a message.
        dead_letter_retention: how long the dead-letter queue keeps one (default: the
            same as ``retention``); never shorter, since a message keeps its original
            enqueue time when it moves.

    Raises:
        ConfigurationError: a bad name, count or retention. BackendError: the service refused.
    """
    if max_receive_count is None:
        max_receive_count = DEFAULT_RETRY.max_receives
    if not name or max_receive_count < 1:
        raise ConfigurationError("ensure_queue needs a queue name and max_receive_count >= 1")
    dead_letter_retention = retention if dead_letter_retention is None else dead_letter_retention
    if dead_letter_retention < retention:
        raise ConfigurationError(
            f"ensure_queue({name!r}): dead_letter_retention ({dead_letter_retention}) is shorter than "
            f"retention ({retention}); a dead letter keeps its original enqueue time, so SQS would "
            "delete it early. Give the dead-letter queue at least the queue's retention.")
    sqs = client if client is not None else make_client(region, endpoint_url)
    fifo = name.endswith(".fifo")
    base = name[: -len(".fifo")] if fifo else name
    dlq_name = dead_letter_name or (f"{base}-dlq.fifo" if fifo else f"{base}-dlq")
    if fifo != dlq_name.endswith(".fifo"):
        raise ConfigurationError(f"the dead-letter queue of {name!r} must be "
                                 f"{'a FIFO' if fifo else 'a standard'} queue, got {dlq_name!r}")
    common: dict[str, str] = {}
    if fifo:
        common["FifoQueue"] = "true"
    dlq_url = _create(sqs, dlq_name, {
        **common, "MessageRetentionPeriod": str(int(dead_letter_retention.total_seconds()))})
    dlq_arn = _arn(sqs, dlq_url)
    queue_arn = dlq_arn.rsplit(":", 1)[0] + ":" + name  # same account and region
    with translated(f"SetQueueAttributes({dlq_name})"):
        sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes={"RedriveAllowPolicy": json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn]})})
    attributes = {**common, "MessageRetentionPeriod": str(int(retention.total_seconds()))}
    attributes["VisibilityTimeout"] = str(int(visibility_timeout.total_seconds()))
    attributes["RedrivePolicy"] = json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    url = _create(sqs, name, attributes)
    return QueuePair(url=url, arn=_arn(sqs, url), dead_letter_url=dlq_url, dead_letter_arn=dlq_arn)


def _create(sqs: SQSClient, name: str, attributes: dict[str, str]) -> str:
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    except Exception as exc:
        if error_code(exc) not in _EXISTS:
            with translated(f"CreateQueue({name})"):
                raise
    # it exists with other attributes: bring them up to date (FifoQueue cannot change)
    with translated(f"GetQueueUrl({name})"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    changeable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
    with translated(f"SetQueueAttributes({name})"):
        sqs.set_queue_attributes(QueueUrl=url, Attributes=changeable)  # type: ignore[arg-type]
    return url


def _arn(sqs: SQSClient, url: str) -> str:
    with translated("GetQueueAttributes"):
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
