"""The SQS backend: standard and FIFO queues, addressed as ``sqs://<queue-name>``.

URL: ``sqs://<queue-name>[?region=eu-west-1&endpoint_url=http://127.0.0.1:5000
&visibility_timeout=30&wait=20&dead_letter_url=...]`` or, with the full queue URL,
``sqs://sqs.eu-west-1.amazonaws.com/123456789012/orders``.

- Delays up to 15 minutes use DelaySeconds; longer ones hop (the core writes
  ``cqnotbefore``; a consumer that receives the message early sends it on with the time
  left). FIFO queues have no per-message delay: a delay there raises UnsupportedFeature.
- The attempt is ApproximateReceiveCount. A retry sets the message's visibility to the
  backoff and leaves it in the queue, so the queue's own count and redrive policy go on.
- Dead letters go to the queue's dead-letter queue (from its RedrivePolicy) with the
  reason in message attributes; the redrive policy's maxReceiveCount catches consumers
  that die.
- Standard queues do not deduplicate; this backend drops a repeated idempotency key it
  sent itself within ``dedup_window`` (one process). FIFO queues deduplicate natively
  (MessageDeduplicationId, 5 minutes).
- FIFO order: SQS may return several messages of one group in one receive. Only the
  oldest is handed out; the others wait in the backend until it is acknowledged (then
  the next one is handed out) or retried (then they are made visible again at once, and
  SQS, which blocks the group while the retried message is hidden, keeps the order).
  Such a message's receive count, and so its attempt number, counts that extra receive.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cloudqueue import (
    Backend,
    BackendError,
    Capabilities,
    ConfigurationError,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    PayloadError,
    QueueNotFound,
    QueueStats,
    StaleDelivery,
    UnsupportedFeature,
)
from cloudqueue.clock import SYSTEM_CLOCK, Clock

from . import _wire
from ._address import parse_arn, parse_url
from ._client import make_client
from ._errors import RETRYABLE_ENTRY_CODES, BatchSendError, error_code, translated

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef, SendMessageBatchRequestEntryTypeDef

    from cloudqueue import Reason

__all__ = ["SQSBackend", "from_url"]

log = logging.getLogger("cloudqueue.aws")

_DEFAULT_SIZE = 256 * 1024
_BATCH = 10
_ENTRY_TRIES = 3
#: what SQS answers a receipt handle that is no longer current
_STALE_CODES = frozenset({"ReceiptHandleIsInvalid", "InvalidReceiptHandle", "MessageNotInflight",
                          "AWS.SimpleQueueService.MessageNotInflight"})


@dataclass(frozen=True, slots=True)
class _QueueInfo:
    arn: str
    max_message_size: int
    dead_letter_arn: str | None
    max_receive_count: int | None
    visibility_timeout: timedelta


class SQSBackend(Backend):
    """An SQS queue as a cloudqueue backend.

    Args:
        queue: the queue's name (``orders``, ``orders.fifo``) or full queue URL.
        client: a boto3 SQS client to use (default: one made on first use, from
            ``region`` and ``endpoint_url``).
        visibility_timeout: how long a receive hides a message (default: the queue's).
        wait: the longest a worker's receive waits for messages (long polling, <= 20 s).
        dead_letter_url: the dead-letter queue (default: from the queue's RedrivePolicy).
        dedup_window: how long a standard queue's sender remembers idempotency keys.
    """

    scheme = "sqs"

    def __init__(self, queue: str, *, client: SQSClient | None = None, region: str | None = None,
                 endpoint_url: str | None = None, visibility_timeout: timedelta | None = None,
                 wait: timedelta = timedelta(seconds=20), dead_letter_url: str | None = None,
                 dedup_window: timedelta = timedelta(minutes=5), clock: Clock = SYSTEM_CLOCK) -> None:
        if not queue:
            raise ConfigurationError("SQSBackend needs a queue name or URL")
        self._queue_url: str | None = queue if "://" in queue else None
        self.name = queue.rstrip("/").rsplit("/", 1)[-1]
        self.fifo = self.name.endswith(".fifo")
        self._client = client
        self._owns_client = client is None
        self._region = region
        self._endpoint_url = endpoint_url
        self.visibility_timeout = visibility_timeout
        self.wait = min(wait, timedelta(seconds=20))
        self._dead_letter_url = dead_letter_url
        self.dedup_window = dedup_window
        self.clock = clock
        self._info: _QueueInfo | None = None
        self._caps: Capabilities | None = None
        self._lock = threading.Lock()
        self._sent_keys: dict[str, tuple[str, float]] = {}
        self._warned: set[str] = set()
        self._move_task = True  # until the endpoint shows it has no StartMessageMoveTask
        self._held: dict[str, deque[Delivery]] = {}  # FIFO: received behind their group's head
        self._outstanding: set[str] = set()  # FIFO: groups whose head is handed out, unsettled

    # -- wiring --------------------------------------------------------------------------
    @property
    def client(self) -> SQSClient:
        """The boto3 client (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self._region, self._endpoint_url)
        return self._client

    @property
    def queue_url(self) -> str:
        """The queue's URL (looked up by name once)."""
        if self._queue_url is None:
            with translated(f"GetQueueUrl({self.name})"):
                self._queue_url = self.client.get_queue_url(QueueName=self.name)["QueueUrl"]
        return self._queue_url

    def _queue_info(self) -> _QueueInfo:
        if self._info is None:
            with translated(f"GetQueueAttributes({self.name})"):
                attrs = self.client.get_queue_attributes(
                    QueueUrl=self.queue_url,
                    AttributeNames=["QueueArn", "MaximumMessageSize", "RedrivePolicy",
                                    "VisibilityTimeout"])["Attributes"]
            policy = json.loads(attrs.get("RedrivePolicy") or "{}")
            receives = policy.get("maxReceiveCount")
            self._info = _QueueInfo(
                arn=attrs.get("QueueArn", ""),
                max_message_size=int(attrs.get("MaximumMessageSize") or _DEFAULT_SIZE),
                dead_letter_arn=policy.get("deadLetterTargetArn"),
                max_receive_count=int(receives) if receives is not None else None,
                visibility_timeout=timedelta(seconds=int(attrs.get("VisibilityTimeout") or 30)))
        return self._info

    @property
    def dead_letter_url(self) -> str:
        """The dead-letter queue's URL, from the option or the queue's RedrivePolicy.

        Raises:
            QueueNotFound: the queue has no redrive policy and no dead_letter_url was given.
        """
        if self._dead_letter_url is None:
            arn = self._queue_info().dead_letter_arn
            if not arn:
                raise QueueNotFound(
                    f"SQS queue {self.name!r} has no dead-letter queue: give it a RedrivePolicy "
                    "(Terraform module aws-sqs-lambda, or cloudqueue_aws.ensure_queue) or pass "
                    "dead_letter_url")
            self._dead_letter_url = queue_url_for_arn(self.client, arn)
        return self._dead_letter_url

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            size = self._queue_info().max_message_size
            # FIFO queues take no per-message DelaySeconds: max_delay 0 without hops makes
            # the core refuse any delay there (UnsupportedFeature) instead of dropping it.
            self._caps = Capabilities(
                max_delay=timedelta(0) if self.fifo else timedelta(seconds=_wire.MAX_DELAY_SECONDS),
                delay_hops=not self.fifo, max_message_size=size, max_batch=_BATCH,
                fifo=self.fifo, dedup=True, pull=True, push=True, visibility=True)
        return self._caps

    # -- producing -------------------------------------------------------------------------
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        from cloudqueue import BackendError, BackendUnavailable, EnqueueError

        limit = self.capabilities.max_message_size
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        sizes: list[int] = []
        ids: list[str] = []
        owners: list[int] = []  # index into ``ids`` of each entry
        keys_here: dict[str, tuple[str, float]] = {}  # a key repeated within this call
        now = self.clock.time()
        for out in messages:
            text, attributes = _wire.body_text(out.body)
            size = _wire.message_size(text, attributes)
            if size > limit:
                raise PayloadError(f"message for job {out.job_type!r} is {size} bytes, over the SQS "
                                   f"queue {self.name!r} limit of {limit} bytes; nothing was sent",
                                   job=out.job_type or None)
            if not self.fifo and out.idempotency_key is not None:
                seen = self._sent_keys.get(out.idempotency_key) or keys_here.get(out.idempotency_key)
                if seen is not None and seen[1] > now:
                    ids.append(seen[0])
                    continue
                keys_here[out.idempotency_key] = (out.job_id, float("inf"))
            self._check_attempts(out)
            entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(len(entries)), "MessageBody": text}
            if attributes:
                entry["MessageAttributes"] = attributes
            if self.fifo:
                if out.delay > timedelta(0):
                    raise UnsupportedFeature(f"SQS FIFO queue {self.name!r} has no per-message delay; "
                                             "enqueue without a delay, or use a standard queue")
                entry["MessageGroupId"] = out.ordering_key or out.job_id
                entry["MessageDeduplicationId"] = _wire.dedup_id(out.idempotency_key, text)
            elif out.delay > timedelta(0):
                entry["DelaySeconds"] = _wire.delay_seconds(out.delay.total_seconds())
            owners.append(len(ids))
            ids.append(out.job_id)
            entries.append(entry)
            sizes.append(size)
        failed: dict[str, tuple[str, str]] = {}  # refused for good: job id -> code, message
        errors: dict[str, Exception] = {}  # every job id not sent -> why
        unknown: list[str] = []  # the call carrying it failed: it may be in the queue
        cause: Exception | None = None  # the first SendMessageBatch that failed as a whole
        answered = False  # some SendMessageBatch of this send went through
        for batch in _pack(entries, sizes, limit):
            owned = {int(entry["Id"]): ids[owners[int(entry["Id"])]] for entry in batch}
            if cause is not None:  # the endpoint is in trouble: start no more calls
                for job_id in owned.values():
                    errors[job_id] = BackendError(f"not sent: an earlier SendMessageBatch to "
                                                  f"{self.name!r} failed ({cause})")
                continue
            try:
                refused, cut, cut_error = self._send_batch(batch)
            except Exception as exc:
                cause, cut, cut_error, refused = exc, list(owned), exc, []
            else:
                answered = True
            for index, code, text in refused:
                failed[owned[index]] = (code, text)
            if cut_error is not None:
                cause = cause or cut_error
                maybe = EnqueueError.outcome_unknown(cut_error)
                for index in cut:
                    job_id = owned[index]
                    if maybe:
                        unknown.append(job_id)
                        errors[job_id] = BackendUnavailable(
                            f"unknown: may have been sent (SendMessageBatch to {self.name!r} got "
                            f"no answer: {cut_error})")
                    else:
                        errors[job_id] = cut_error
        if cause is not None and not answered:
            raise cause  # nothing of this send got through: the call's own error
        if not self.fifo:
            expires = now + self.dedup_window.total_seconds()
            with self._lock:
                for out in messages:
                    if out.idempotency_key is not None and out.job_id not in failed \
                            and out.job_id not in errors:
                        self._sent_keys.setdefault(out.idempotency_key, (out.job_id, expires))
                self._sent_keys = {k: v for k, v in self._sent_keys.items() if v[1] > now}
        if failed or errors:
            missing = {job_id: None for job_id in ids if job_id in failed or job_id in errors}
            sent = [job_id for job_id in ids if job_id not in missing]
            if cause is None:
                detail = "; ".join(f"{job}: {code} {text}" for job, (code, text) in failed.items())
                text = (f"SQS refused {len(failed)} of {len(messages)} messages for queue "
                        f"{self.name!r}: {detail}")
            else:
                text = (f"SQS queue {self.name!r}: {len(sent)} of {len(messages)} messages reached "
                        f"the queue, {len(missing)} did not ({len(unknown)} of them unknown: may "
                        f"have been sent): {cause}")
            error = BatchSendError(
                text, sent=sent, failed=failed, not_sent=list(missing), errors=errors,
                unknown=unknown, job_ids=ids,
                not_sent_messages=[out for out in messages if out.job_id in missing])
            if cause is not None:
                raise error from cause
            raise error
        return ids

    def _check_attempts(self, out: OutgoingMessage) -> None:
        receives = self._queue_info().max_receive_count
        if receives is None or out.max_attempts is None or out.max_attempts <= receives \
                or out.job_type in self._warned:
            return
        self._warned.add(out.job_type)
        log.warning("job %s has %d attempts but SQS queue %s moves a message to dead letters "
                    "after %d receives: raise maxReceiveCount to at least %d", out.job_type,
                    out.max_attempts, self.name, receives, out.max_attempts)

    def _send_batch(self, batch: list[SendMessageBatchRequestEntryTypeDef],
                    ) -> tuple[list[tuple[int, str, str]], list[int], Exception | None]:
        """Send one SendMessageBatch, again for entries that failed retryably.

        Returns the entries refused for good (index, code, message), and, when a repeat
        call failed, the indexes it carried with its error (the first call's entries that
        SQS took are in the queue either way).

        Raises:
            BackendError: the first call failed (translated); nothing of the batch was taken
                unless the error leaves that unknown (``EnqueueError.outcome_unknown``).
        """
        pending = batch
        final: list[tuple[int, str, str]] = []
        for attempt in range(_ENTRY_TRIES):
            try:
                with translated(f"SendMessageBatch({self.name})"):
                    response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            except Exception as exc:
                if attempt == 0:
                    raise
                return final, [int(entry["Id"]) for entry in pending], exc
            by_id = {entry["Id"]: entry for entry in pending}
            again: list[SendMessageBatchRequestEntryTypeDef] = []
            for error in response.get("Failed") or []:
                code = error.get("Code", "?")
                retryable = code in RETRYABLE_ENTRY_CODES or not error.get("SenderFault", True)
                if retryable and attempt < _ENTRY_TRIES - 1:
                    again.append(by_id[error["Id"]])
                else:
                    final.append((int(error["Id"]), code, error.get("Message", "")))
            if not again:
                break
            pending = again
            time.sleep(0.05 * 2 ** attempt)  # the service asked to slow down or failed on its side
        return final, [], None

    # -- consuming -------------------------------------------------------------------------
    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        if self.fifo:
            ready = self._next_held(max_messages)
            if ready:
                return ready
        wait_seconds = int(min(wait, self.wait).total_seconds())
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url, "MaxNumberOfMessages": max(1, min(max_messages, _BATCH)),
            "WaitTimeSeconds": wait_seconds, "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "MessageGroupId"],
        }
        hide = visibility or self.visibility_timeout
        if hide is not None:
            seconds = _wire.visibility_seconds(hide.total_seconds())
            params["VisibilityTimeout"] = seconds
            in_force = timedelta(seconds=seconds)
        else:
            in_force = self._queue_info().visibility_timeout
        with translated(f"ReceiveMessage({self.name})"):
            messages = self.client.receive_message(**params).get("Messages") or []
        # SQS starts the visibility when it answers (a long poll answers as soon as a message
        # is there); a quarter of the window, at most a second, covers the answer's way here
        window = in_force.total_seconds()
        lease_until = self.clock.time() + window - min(1.0, window / 4)
        deliveries = [delivery_from_message(m, visibility=in_force, lease_until=lease_until)
                      for m in messages]
        return self._hold_behind_heads(deliveries) if self.fifo else deliveries

    def _next_held(self, max_messages: int) -> list[Delivery]:
        out: list[Delivery] = []
        with self._lock:
            for group in list(self._held):
                if len(out) >= max_messages:
                    break
                if group in self._outstanding:
                    continue
                waiting = self._held[group]
                out.append(waiting.popleft())
                self._outstanding.add(group)
                if not waiting:
                    del self._held[group]
        return out

    def _hold_behind_heads(self, deliveries: list[Delivery]) -> list[Delivery]:
        # SQS hands out a group's messages only when none of it is in flight, so the first
        # of each group in a response is its head, whatever this backend remembers (a
        # consumer may have died); the rest of the group waits behind it.
        out: list[Delivery] = []
        heads: set[str] = set()
        with self._lock:
            for delivery in deliveries:
                group = delivery.ordering_key
                if group is None:
                    out.append(delivery)
                elif group in heads:
                    self._held[group].append(delivery)
                else:
                    heads.add(group)
                    self._held[group] = deque()  # anything held before has expired in SQS
                    self._outstanding.add(group)
                    out.append(delivery)
            for group in heads:
                if not self._held[group]:
                    del self._held[group]
        return out

    def _settled(self, delivery: Delivery, *, left_the_group: bool) -> None:
        """A FIFO group's head is settled: its next message may go, or all go back."""
        group = delivery.ordering_key
        if not self.fifo or group is None:
            return
        with self._lock:
            self._outstanding.discard(group)
            behind = [] if left_the_group else list(self._held.pop(group, ()))
        self._show_again(behind)

    def _show_again(self, deliveries: Sequence[Delivery]) -> None:
        for start in range(0, len(deliveries), _BATCH):
            entries: list[Any] = [{"Id": str(n), "ReceiptHandle": d.handle, "VisibilityTimeout": 0}
                                  for n, d in enumerate(deliveries[start:start + _BATCH])]
            with translated(f"ChangeMessageVisibilityBatch({self.name})"):
                self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def _check_lease(self, delivery: Delivery) -> None:
        # SQS may accept an old receipt handle after the message went to another consumer,
        # so a settle after the visibility ran out could delete a message someone else is
        # running: refuse it here (the message comes back, at least once holds)
        until = delivery.lease_until
        if until is not None and self.clock.time() >= until:
            raise StaleDelivery(
                f"SQS message {delivery.message_id}: its visibility ran out "
                f"{self.clock.time() - until:.1f}s ago, so another consumer may hold it now; "
                "left to the queue (a job longer than the visibility needs a worker heartbeat "
                "or a longer visibility timeout)")

    def ack(self, delivery: Delivery) -> None:
        self._check_lease(delivery)
        self._delete(delivery)
        self._settled(delivery, left_the_group=True)

    def _delete(self, delivery: Delivery) -> None:
        with translated(f"DeleteMessage({self.name})"):
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=delivery.handle)

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        # Leaving the message in the queue keeps its receive count (the attempt) and
        # lets the redrive policy see it; its visibility is the backoff.
        self._check_lease(delivery)
        self._set_visibility(delivery, delay)
        self._settled(delivery, left_the_group=False)

    def release(self, delivery: Delivery) -> None:
        self._check_lease(delivery)
        self._set_visibility(delivery, timedelta(0))
        self._settled(delivery, left_the_group=False)

    def release_many(self, deliveries: Sequence[Delivery]) -> None:
        now = self.clock.time()
        current = [d for d in deliveries if d.lease_until is None or now < d.lease_until]
        self._show_again(current)
        for delivery in current:
            self._settled(delivery, left_the_group=False)

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        self._check_lease(delivery)
        started = self.clock.time()
        self._set_visibility(delivery, timeout)
        if delivery.lease_until is not None:
            delivery.lease_until = started + _wire.visibility_seconds(timeout.total_seconds())

    def _set_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        try:
            with translated(f"ChangeMessageVisibility({self.name})"):
                self.client.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=delivery.handle,
                    VisibilityTimeout=_wire.visibility_seconds(timeout.total_seconds()))
        except BackendError as exc:
            cause = exc.__cause__ or exc
            code = error_code(cause)
            if code in _STALE_CODES or (code == "InvalidParameterValue" and (
                    "ReceiptHandle" in str(cause) or "not available for visibility" in str(cause))):
                raise StaleDelivery(f"SQS message {delivery.message_id}: {exc}") from exc
            raise

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        if self.fifo:  # no per-message delay: hide this copy instead (keeps the group's order)
            self.retry(delivery, delay)
            return
        self._check_lease(delivery)
        self.send_copy(delivery, delay)
        self.ack(delivery)

    def send_copy(self, delivery: Delivery, delay: timedelta) -> None:
        """Send the delivery's message again, attributes and all, due after ``delay``."""
        text, attributes = _wire.body_text(delivery.body)
        carried = _wire.carried_attributes(_raw_attributes(delivery), keep=10 - len(attributes))
        with translated(f"SendMessage({self.name})"):
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=text,
                                     MessageAttributes={**carried, **attributes},
                                     DelaySeconds=_wire.delay_seconds(delay.total_seconds()))

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        self._check_lease(delivery)
        self.send_dead_letter(delivery, reason)
        self.ack(delivery)

    def send_dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        """Send the delivery's original message to dead letters with ``reason``; keep it here."""
        send_dead_letter(self.client, self.dead_letter_url, fifo=self.fifo, delivery=delivery,
                         reason=str(reason), clock=self.clock)

    # -- inspecting ------------------------------------------------------------------------
    def stats(self) -> QueueStats:
        """The queue's approximate counts (GetQueueAttributes), and everything in its
        dead-letter queue (None without a RedrivePolicy). SQS has no oldest age among its
        attributes (ApproximateAgeOfOldestMessage is a CloudWatch metric) and no running
        totals of deleted messages: those are None."""
        counts = self._counts(self.queue_url)
        dead = self._counts(self.dead_letter_url) if self._has_dead_letters() else None
        return QueueStats(waiting=counts[0], in_flight=counts[1], delayed=counts[2],
                          dead_lettered=None if dead is None else sum(dead))

    def _has_dead_letters(self) -> bool:
        return self._dead_letter_url is not None or bool(self._queue_info().dead_letter_arn)

    def _counts(self, url: str) -> tuple[int, int, int]:
        with translated("GetQueueAttributes"):
            attrs = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return (int(attrs.get("ApproximateNumberOfMessages", 0)),
                int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        from ._deadletters import peek

        return peek(self.client, self.dead_letter_url, limit=limit)

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        from ._deadletters import move_back, start_move_task

        if message_ids is None and self._move_task:
            moved = start_move_task(self.client, self._queue_info().arn, self.dead_letter_url)
            if moved is not None:
                return moved
            self._move_task = False  # this endpoint has no StartMessageMoveTask
        return move_back(self.client, self.dead_letter_url, self.queue_url, fifo=self.fifo,
                         message_ids=message_ids)

    def purge_dead_letters(self) -> int:
        url = self.dead_letter_url
        waiting, in_flight, _ = self._counts(url)
        with translated("PurgeQueue(dead letters)"):
            self.client.purge_queue(QueueUrl=url)
        return waiting + in_flight

    def purge(self) -> int:
        """Drop every message in the queue itself (not the dead letters); return about how many."""
        waiting, in_flight, delayed = self._counts(self.queue_url)
        with translated(f"PurgeQueue({self.name})"):
            self.client.purge_queue(QueueUrl=self.queue_url)
        return waiting + in_flight + delayed

    def close(self) -> None:
        with self._lock:
            held = [d for waiting in self._held.values() for d in waiting]
            self._held.clear()
            self._outstanding.clear()
        if held:  # received but never handed out: give them back at once
            try:
                self._show_again(held)
            except Exception:
                pass  # they come back after their visibility timeout
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"<SQSBackend {self.name}>"


def _pack(entries: list[SendMessageBatchRequestEntryTypeDef], sizes: list[int],
          limit: int) -> list[list[SendMessageBatchRequestEntryTypeDef]]:
    """Split entries into SendMessageBatch calls: at most 10, and at most ``limit`` bytes, each."""
    batches: list[list[SendMessageBatchRequestEntryTypeDef]] = []
    current: list[SendMessageBatchRequestEntryTypeDef] = []
    total = 0
    for entry, size in zip(entries, sizes, strict=True):
        if current and (len(current) == _BATCH or total + size > limit):
            batches.append(current)
            current, total = [], 0
        current.append(entry)
        total += size
    if current:
        batches.append(current)
    return batches


def delivery_from_message(message: MessageTypeDef, *, visibility: timedelta | None = None,
                          lease_until: float | None = None) -> Delivery:
    """A ``Delivery`` from one ReceiveMessage result."""
    system = message.get("Attributes") or {}
    attributes = message.get("MessageAttributes")
    return Delivery(body=_wire.body_bytes(message.get("Body", ""), attributes),
                    attempt=int(system.get("ApproximateReceiveCount", 1)),
                    message_id=message.get("MessageId", ""), handle=message.get("ReceiptHandle"),
                    ordering_key=system.get("MessageGroupId"),
                    attributes=_wire.string_attributes(attributes), visibility=visibility,
                    lease_until=lease_until, raw=attributes)


def _raw_attributes(delivery: Delivery) -> Mapping[str, Any] | None:
    """The producer's message attributes as received (boto3 or Lambda-event spelling)."""
    raw = delivery.raw
    if isinstance(raw, Mapping):
        return raw
    return {name: {"DataType": "String", "StringValue": value}
            for name, value in delivery.attributes.items()} or None


def send_dead_letter(client: SQSClient, dead_letter_url: str, *, fifo: bool, delivery: Delivery,
                     reason: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """Send a delivery's original body to dead letters with the reason in its attributes."""
    text, encoding = _wire.body_text(delivery.body)
    attributes = _wire.dead_letter_attributes(
        reason=reason, source_message_id=delivery.message_id, attempt=delivery.attempt,
        now=clock.now(), carried=encoding)
    # the producer's attributes travel with it, in the slots SQS leaves (10 a message)
    attributes = {**_wire.carried_attributes(_raw_attributes(delivery), keep=10 - len(attributes)),
                  **attributes}
    params: dict[str, Any] = {"QueueUrl": dead_letter_url, "MessageBody": text,
                              "MessageAttributes": attributes}
    if fifo:
        params["MessageGroupId"] = delivery.ordering_key or delivery.message_id
        params["MessageDeduplicationId"] = f"dead-{delivery.message_id}"[:128]
    with translated("SendMessage(dead letters)"):
        client.send_message(**params)


def queue_url_for_arn(client: SQSClient, arn: str) -> str:
    """The URL of the queue an ARN names (GetQueueUrl with its name and account)."""
    parsed = parse_arn(arn)
    with translated(f"GetQueueUrl({parsed.name})"):
        return client.get_queue_url(QueueName=parsed.name,
                                    QueueOwnerAWSAccountId=parsed.account)["QueueUrl"]


def from_url(url: str, *, client: SQSClient | None = None, clock: Clock = SYSTEM_CLOCK) -> SQSBackend:
    """Open ``sqs://<queue-name>[?options]`` (see the module docstring); no SDK call yet."""
    address = parse_url(url)
    return SQSBackend(address.queue_url or address.name, client=client, region=address.region,
                      endpoint_url=address.endpoint_url, visibility_timeout=address.visibility_timeout,
                      wait=address.wait or timedelta(seconds=20),
                      dead_letter_url=address.dead_letter_url, clock=clock)
