"""The Lambda shim: an SQS event in, a partial batch response out.

    handler = cloudqueue_aws.lambda_handler(app)   # the function's handler

The whole event is checked before any job runs: a record without its id, receipt
handle, body, receive count or SQS source raises ``SQSEventError`` and nothing runs (the
platform delivers the batch again, and a batch never half-runs twice).

Then the records go through the core's batch template (``cloudqueue.lifecycle.Batch``)
and its one settle path, against a backend bound to the event's queue:

- success: no SQS call (the event source mapping deletes the record) and no boto3 import;
- retry: the message's visibility becomes the backoff, and the record is reported in
  ``batchItemFailures`` so it stays and its receive count (the attempt) goes on;
- permanent, poison, exhausted: sent to the queue's dead-letter queue with the reason and
  the producer's attributes, then reported as a success; if that send fails, reported as
  a failure, so nothing is lost;
- a job that raises anything at all, ``SystemExit`` included, fails only its own record;
- FIFO: a record that stays in the queue fails the rest of its group in the batch, unstarted;
- when the invocation's remaining time falls below ``safety_margin`` no further record is
  started: those are made visible again at once and reported as failures.

An app with several queues (``cq.App(queues={...})``) takes each event from whichever of
its queues the event source ARN names (matched by queue name, read from the queue URLs
without an SQS call); an event from a queue that is none of them raises
``SQSEventError`` naming it and the app's queues, before any job runs.

A queue with no RedrivePolicy (for example a dead-letter queue the function reads) has
nowhere to put dead letters: such records stay in it, hidden for 6 hours at a time, and
one error line per batch says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cloudqueue import Backend, Capabilities, ConfigurationError, Delivery
from cloudqueue.lifecycle import Batch

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

    from cloudqueue import App, OutgoingMessage, Reason

    from .backend import SQSBackend

__all__ = ["SQSEventError", "lambda_handler"]

log = logging.getLogger("cloudqueue.aws")

Handler = Callable[[Any, Any], dict[str, list[dict[str, str]]]]

_ENCODING = "cq-body-encoding"  # _wire.ENCODING; _wire (re, base64, hashlib) loads off the hot path
_NO_ATTRIBUTES: Mapping[str, str] = {}
#: how long a record with nowhere to go is hidden (SQS caps a message's total at 12 hours)
_HIDE_SECONDS = 6 * 3600
_STANDARD = Capabilities(max_delay=timedelta(seconds=900), delay_hops=True, pull=False, push=True)
_FIFO = Capabilities(max_delay=timedelta(seconds=900), fifo=True, dedup=True, pull=False, push=True)


class SQSEventError(ConfigurationError, TypeError):
    """The handler was invoked with something that is not a whole SQS event."""


def lambda_handler(app: App, *, client: SQSClient | None = None,
                   safety_margin: timedelta = timedelta(seconds=5)) -> Handler:
    """Build the Lambda handler ``handler(event, context)`` for ``app``'s jobs.

    Args:
        app: the app whose jobs the queue carries.
        client: a boto3 SQS client for retries and dead letters (default: the client of
            the app's SQS backend, with its region and endpoint; else one made on the
            first record that needs it, in the record's region).
        safety_margin: stop starting records when less than this is left of the invocation.
    """
    return _Shim(app, client, safety_margin).handle


class _Shim:
    def __init__(self, app: App, client: SQSClient | None, safety_margin: timedelta) -> None:
        self.app = app
        self._client = client
        self._margin = safety_margin.total_seconds()
        self._queues: dict[str, SQSBackend] = {}  # by ARN, kept across warm invocations
        self._sources: dict[str, str] = {}  # event source ARN -> app queue name (several queues)

    # -- the hot path --------------------------------------------------------------------
    def handle(self, event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
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
        invocation = os.environ.get("_X_AMZN_TRACE_ID")  # the runtime sets it per invocation
        deliveries = _deliveries(event, deadline, (invocation,) if invocation else ())
        if not deliveries:
            return {"batchItemFailures": []}
        arn = event["Records"][0]["eventSourceARN"]
        if len(self.app.queue_names) > 1 and arn not in self._sources:
            self._sources[arn] = self.source(arn)
        queue = _EventQueue(self, arn, _region(event))
        stays = Batch(self.app.dispatcher, queue, stop_at=stop_at, kept=queue.kept).run(deliveries)
        queue.finish()
        return {"batchItemFailures": [{"itemIdentifier": d.message_id} for d in stays]}

    def source(self, arn: str) -> str:
        """The app queue an event source ARN names.

        Raises:
            SQSEventError: none of the app's queues is that SQS queue.
        """
        from ._address import parse_url

        name = arn.rsplit(":", 1)[-1]
        known: list[str] = []
        for queue in self.app.queue_names:
            url = self.app.queue_url(queue)
            if url is not None:
                queue_name = parse_url(url).name if url.startswith("sqs://") else None
            else:
                backend = self.app.queue(queue)
                found = getattr(backend, "name", None) if backend.scheme == "sqs" else None
                queue_name = found if isinstance(found, str) else None
            if queue_name == name:
                return queue
            known.append(f"{queue} ({queue_name or 'not SQS'})")
        raise SQSEventError(
            f"event from SQS queue {name!r} ({arn}), which is none of the queues of app "
            f"{self.app.name!r}: {', '.join(known)}; point the event source mapping at one of them, or "
            "add the queue to cq.App(queues=...)")

    # -- SQS, looked up once per handler --------------------------------------------------------
    def client(self, region: str | None) -> SQSClient:
        if self._client is None:
            from .backend import SQSBackend

            backend = self.app.backend
            if isinstance(backend, SQSBackend):  # the app's own settings: region, endpoint
                self._client = backend.client
            else:
                from ._client import make_client

                self._client = make_client(region=region)
        return self._client

    def queue(self, arn: str, region: str | None) -> SQSBackend:
        queue = self._queues.get(arn)
        if queue is None:
            from .backend import SQSBackend, queue_url_for_arn

            client = self.client(region)
            queue = self._queues[arn] = SQSBackend(queue_url_for_arn(client, arn), client=client,
                                                   clock=self.app.clock)
        return queue


class _EventQueue(Backend):
    """The queue an event came from, as a backend settling that event's records.

    A success needs nothing (the event source mapping deletes it); everything else is an
    SQS call through the queue's ``SQSBackend``, made (with boto3) on first need.
    """

    scheme = "sqs"

    def __init__(self, shim: _Shim, arn: str, region: str | None) -> None:
        self._shim = shim
        self._arn = arn
        self._region = region
        self._caps = _FIFO if arn.endswith(".fifo") else _STANDARD
        self._kept: set[int] = set()  # records settled in a way that leaves them in the queue
        self._nowhere: list[str] = []  # records that had no dead-letter queue to go to

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def name(self) -> str:
        """The queue's name (the ARN's last part), as the log records show it."""
        return self._arn.rsplit(":", 1)[-1]

    @property
    def sqs(self) -> SQSBackend:
        return self._shim.queue(self._arn, self._region)

    def kept(self, delivery: Delivery) -> bool:
        return id(delivery) in self._kept

    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        return self.sqs.send(messages)

    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: the event source mapping deletes records not reported as failed."""

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        self.sqs.retry(delivery, delay)

    def defer(self, delivery: Delivery, delay: timedelta) -> None:
        self.sqs.retry(delivery, delay)

    def release(self, delivery: Delivery) -> None:
        self.sqs.release(delivery)

    def release_many(self, deliveries: Sequence[Delivery]) -> None:
        self.sqs.release_many(deliveries)

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        if self._caps.fifo:  # no per-message delay: hide it instead (keeps the group's order)
            self.sqs.retry(delivery, delay)
        else:
            self.sqs.send_copy(delivery, delay)

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        from cloudqueue import QueueNotFound

        sqs = self.sqs
        try:
            sqs.dead_letter_url  # noqa: B018 - looks up the RedrivePolicy once per queue
        except QueueNotFound:
            sqs.retry(delivery, timedelta(seconds=_HIDE_SECONDS))
            self._kept.add(id(delivery))
            self._nowhere.append(delivery.message_id)
            return
        sqs.send_dead_letter(delivery, reason)

    def finish(self) -> None:
        if self._nowhere:
            log.error("SQS queue %s has no RedrivePolicy (is it itself a dead-letter queue?): %d "
                      "record(s) that belong in dead letters stay in it, hidden for 6 hours at a "
                      "time, until its retention ends or they are redriven: %s", self._arn,
                      len(self._nowhere), ", ".join(self._nowhere[:10]))


def _region(event: Mapping[str, Any]) -> str | None:
    region = event["Records"][0].get("awsRegion")
    return region if isinstance(region, str) else None


class _NotSQS(Exception):
    pass


def _not_sqs(event: Any) -> SQSEventError:
    return SQSEventError(f"cloudqueue_aws.lambda_handler handles SQS events; got {_describe(event)}. "
                         "Point an SQS event source mapping (with ReportBatchItemFailures) at this "
                         "function")


def _deliveries(event: Any, deadline: datetime | None, invocation: tuple[str, ...] = ()) -> list[Delivery]:
    """Every record of an SQS event as a delivery, or ``SQSEventError`` before any job runs.

    Each delivery's ``platform_trace`` holds the record's ``AWSTraceHeader`` (the X-Ray
    context it was sent under), then ``invocation`` (this invocation's ``_X_AMZN_TRACE_ID``).
    """
    records = event.get("Records") if isinstance(event, Mapping) else None
    if type(records) is not list:
        raise _not_sqs(event)
    out: list[Delivery] = []
    append = out.append
    for index, record in enumerate(records):
        try:
            if record["eventSource"] != "aws:sqs":
                raise _NotSQS
            attributes = record["attributes"]
            message_id, handle, body = record["messageId"], record["receiptHandle"], record["body"]
            attempt = int(attributes["ApproximateReceiveCount"])
            if type(message_id) is not str or type(handle) is not str or not message_id:
                raise TypeError("messageId and receiptHandle must be strings")
            extra = record.get("messageAttributes")
            data = _decoded(body, extra) if extra and _ENCODING in extra else body.encode()
            group = attributes.get("MessageGroupId")
            sent_under = attributes.get("AWSTraceHeader")
        except _NotSQS:
            raise _not_sqs(event) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, KeyError) and exc.args == ("eventSource",):
                raise _not_sqs(event) from None
            raise SQSEventError(
                f"SQS event record {index} is incomplete or malformed ({_what(exc)}); no job ran. "
                "Each record needs messageId, receiptHandle, a string body, eventSource 'aws:sqs', "
                "eventSourceARN and attributes.ApproximateReceiveCount, as the event source "
                "mapping sends them") from None
        append(Delivery(data, attempt, message_id, handle, group, deadline, _NO_ATTRIBUTES, None, None, extra,
                        (sent_under, *invocation) if sent_under else invocation))
    if out and type(records[0].get("eventSourceARN")) is not str:  # one mapping, one queue: settles need it
        raise SQSEventError("SQS event record 0 is incomplete or malformed (missing 'eventSourceARN'); "
                            "no job ran")
    return out


def _what(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def _decoded(body: str, attributes: Mapping[str, Any]) -> bytes:
    from . import _wire

    return _wire.body_bytes(body, attributes)


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
