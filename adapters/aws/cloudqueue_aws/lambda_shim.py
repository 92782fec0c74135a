"""The Lambda shim: an SQS event in, a partial batch response out.

    handler = cloudqueue_aws.lambda_handler(app)   # the function's handler

Each record goes through the core dispatcher. Successes cost no SQS call (the event
source mapping deletes them) and no boto3 import. A retry sets the message's visibility
to the backoff, then reports the record in ``batchItemFailures`` so it stays in the
queue and its receive count (the attempt) goes on. Permanent, poison and exhausted
messages are sent to the queue's dead-letter queue with the reason and reported as
successes; if that send fails they are reported as failures, so nothing is lost. In a
FIFO queue a failure fails the rest of its message group in the batch, unstarted. When
the invocation's remaining time falls below ``safety_margin``, no further record is
started: those are made visible again at once and reported as failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cloudqueue import ConfigurationError, Delivery, Outcome
from cloudqueue.dispatch import Result, Task

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

    from cloudqueue import App

__all__ = ["SQSEventError", "lambda_handler"]

log = logging.getLogger("cloudqueue.aws")

Handler = Callable[[Any, Any], dict[str, list[dict[str, str]]]]

_ENCODING = "cq-body-encoding"  # _wire.ENCODING; _wire (re, base64, hashlib) loads off the hot path
_ACK = Outcome.ACK
_RETRY = Outcome.RETRY
_HOP = Outcome.HOP


class SQSEventError(ConfigurationError, TypeError):
    """The handler was invoked with something that is not an SQS event."""


def lambda_handler(app: App, *, client: SQSClient | None = None,
                   safety_margin: timedelta = timedelta(seconds=5)) -> Handler:
    """Build the Lambda handler ``handler(event, context)`` for ``app``'s jobs.

    Args:
        app: the app whose jobs the queue carries.
        client: a boto3 SQS client for retries and dead letters (default: one made on the
            first record that needs it, in the record's region).
        safety_margin: stop starting records when less than this is left of the invocation.
    """
    return _Shim(app, client, safety_margin).handle


class _Shim:
    def __init__(self, app: App, client: SQSClient | None, safety_margin: timedelta) -> None:
        self.app = app
        self._client = client
        self._margin = safety_margin.total_seconds()
        self._queue_urls: dict[str, str] = {}
        self._dead_letter_urls: dict[str, str] = {}

    # -- the hot path --------------------------------------------------------------------
    def handle(self, event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
        records = _records(event)
        dispatcher = self.app.dispatcher
        prepare, run = dispatcher.prepare, dispatcher.run
        # The remaining time is read once; after that the app's clock tells how much is
        # left (cheaper per record than asking the context, and the same thing).
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        clock = self.app.clock
        deadline = None
        stop_at = float("inf")
        if remaining is not None:
            left = remaining() / 1000
            now = clock.time()
            stop_at = now + left - self._margin
            deadline = datetime.fromtimestamp(now + left, timezone.utc)
        failures: list[dict[str, str]] = []
        blocked: set[str] = set()
        for index, record in enumerate(records):
            if clock.time() >= stop_at:
                self._give_back(records[index:], failures)
                break
            attributes = record["attributes"]
            group = attributes.get("MessageGroupId")
            if group is not None and group in blocked:
                failures.append({"itemIdentifier": record["messageId"]})
                continue
            body = record["body"]
            extra = record.get("messageAttributes")
            data = _decoded(body, extra) if extra and _ENCODING in extra else body.encode()
            delivery = Delivery(data, int(attributes["ApproximateReceiveCount"]), record["messageId"],
                                record["receiptHandle"], group, deadline)
            prepared = prepare(delivery)
            result = run(prepared) if type(prepared) is Task else prepared
            if result.outcome is _ACK:  # type: ignore[union-attr]
                continue
            if not self._settle(record, result):  # type: ignore[arg-type]
                failures.append({"itemIdentifier": record["messageId"]})
                if group is not None:
                    blocked.add(group)
        return {"batchItemFailures": failures}

    # -- the rest: failures need SQS ----------------------------------------------------------
    def _settle(self, record: Mapping[str, Any], result: Result) -> bool:
        """Apply a non-success result; True when the record may leave the source queue."""
        from . import _wire

        outcome = result.outcome
        fifo = "MessageGroupId" in record["attributes"]
        try:
            if outcome is _RETRY:
                assert result.delay is not None
                log.warning("job %s %s attempt %d failed (%s); retrying in %.3gs", result.job_type,
                            result.job_id, result.delivery.attempt, result.reason,
                            result.delay.total_seconds())
                self._set_visibility(record, result.delay.total_seconds())
                return False
            if outcome is _HOP:
                assert result.delay is not None
                if fifo:
                    self._set_visibility(record, result.delay.total_seconds())
                    return False
                self.client(record).send_message(
                    QueueUrl=self.queue_url(record), MessageBody=record["body"],
                    MessageAttributes=_carried(record),
                    DelaySeconds=_wire.delay_seconds(result.delay.total_seconds()))
                return True
            reason = result.reason or "dead-lettered"
            log.error("job %s %s dead-lettered: %s", result.job_type or "?",
                      result.job_id or record["messageId"], reason)
            self._dead_letter(record, result, reason, fifo)
            return True
        except Exception:  # the record stays in the queue and comes back
            log.exception("could not settle SQS message %s (%s); reporting it as failed so the "
                          "queue delivers it again", record["messageId"], outcome.value)
            return False

    def _dead_letter(self, record: Mapping[str, Any], result: Result, reason: str, fifo: bool) -> None:
        from . import _wire

        attributes = _wire.dead_letter_attributes(
            reason=reason, source_message_id=record["messageId"], attempt=result.delivery.attempt,
            now=datetime.now(timezone.utc), carried=record.get("messageAttributes"))
        params: dict[str, Any] = {"QueueUrl": self.dead_letter_url(record), "MessageBody": record["body"],
                                  "MessageAttributes": attributes}
        if fifo:
            params["MessageGroupId"] = record["attributes"]["MessageGroupId"]
            params["MessageDeduplicationId"] = f"dead-{record['messageId']}"[:128]
        self.client(record).send_message(**params)

    def _set_visibility(self, record: Mapping[str, Any], seconds: float) -> None:
        from . import _wire

        self.client(record).change_message_visibility(
            QueueUrl=self.queue_url(record), ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=_wire.visibility_seconds(seconds))

    def _give_back(self, unstarted: list[Mapping[str, Any]], failures: list[dict[str, str]]) -> None:
        """Report records never started as failures, and make them visible again at once."""
        log.warning("stopping early: less than %.3gs of the invocation left; %d record(s) not "
                    "started go back to the queue", self._margin, len(unstarted))
        for record in unstarted:
            failures.append({"itemIdentifier": record["messageId"]})
        by_queue: dict[str, list[Mapping[str, Any]]] = {}
        for record in unstarted:
            by_queue.setdefault(record["eventSourceARN"], []).append(record)
        for group in by_queue.values():
            try:
                client, url = self.client(group[0]), self.queue_url(group[0])
                for start in range(0, len(group), 10):
                    client.change_message_visibility_batch(QueueUrl=url, Entries=[
                        {"Id": str(n), "ReceiptHandle": r["receiptHandle"], "VisibilityTimeout": 0}
                        for n, r in enumerate(group[start:start + 10])])
            except Exception:  # they come back after their visibility timeout
                log.warning("could not make unstarted records visible again", exc_info=True)

    # -- SQS, looked up once per handler --------------------------------------------------------
    def client(self, record: Mapping[str, Any]) -> SQSClient:
        if self._client is None:
            from ._client import make_client

            self._client = make_client(region=record.get("awsRegion"))
        return self._client

    def queue_url(self, record: Mapping[str, Any]) -> str:
        arn = record["eventSourceARN"]
        url = self._queue_urls.get(arn)
        if url is None:
            from .backend import queue_url_for_arn

            url = self._queue_urls[arn] = queue_url_for_arn(self.client(record), arn)
        return url

    def dead_letter_url(self, record: Mapping[str, Any]) -> str:
        arn = record["eventSourceARN"]
        url = self._dead_letter_urls.get(arn)
        if url is None:
            import json

            from ._errors import translated
            from .backend import queue_url_for_arn

            client = self.client(record)
            with translated("GetQueueAttributes(RedrivePolicy)"):
                attrs = client.get_queue_attributes(QueueUrl=self.queue_url(record),
                                                    AttributeNames=["RedrivePolicy"])["Attributes"]
            target = json.loads(attrs.get("RedrivePolicy") or "{}").get("deadLetterTargetArn")
            if not target:
                raise ConfigurationError(
                    f"SQS queue {arn} has no RedrivePolicy, so there is no dead-letter queue to "
                    "move failed jobs to; set one (Terraform module aws-sqs-lambda)")
            url = self._dead_letter_urls[arn] = queue_url_for_arn(client, target)
        return url


def _decoded(body: str, attributes: Mapping[str, Any]) -> bytes:
    from . import _wire

    return _wire.body_bytes(body, attributes)


def _carried(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's message attributes in SendMessage spelling (only the string ones)."""
    from . import _wire

    return {name: {"DataType": "String", "StringValue": value}
            for name, value in _wire.string_attributes(record.get("messageAttributes")).items()}


def _records(event: Any) -> list[Mapping[str, Any]]:
    """The SQS records of an event, or a clear error naming what the event is instead."""
    if isinstance(event, Mapping):
        records = event.get("Records")
        # one event source mapping reads one queue: the first record speaks for the batch
        if isinstance(records, list) and (not records or (
                isinstance(records[0], Mapping) and records[0].get("eventSource") == "aws:sqs")):
            return records
    raise SQSEventError(f"cloudqueue_aws.lambda_handler handles SQS events; got {_describe(event)}. "
                        "Point an SQS event source mapping (with ReportBatchItemFailures) at this "
                        "function")


def _describe(event: Any) -> str:
    if not isinstance(event, Mapping):
        return f"a {type(event).__name__}"
    records = event.get("Records")
    if isinstance(records, list) and records:
        sources = sorted({str(r.get("eventSource") or r.get("EventSource") or "?")
                          for r in records if isinstance(r, Mapping)})
        return f"records from {', '.join(sources)}"
    if "httpMethod" in event or "routeKey" in event or "requestContext" in event:
        return "an HTTP event (API Gateway or a function URL)"
    if "detail-type" in event:
        return f"an EventBridge event ({event.get('detail-type')!r})"
    keys = ", ".join(sorted(map(str, event))[:8])
    return f"an object with keys {keys or '(none)'}"
