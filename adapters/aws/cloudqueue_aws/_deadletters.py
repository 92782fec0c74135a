"""Dead-letter queue tools: peek with reasons, redrive to the source, (purge is one call).

Peeking receives every dead letter with a short visibility timeout and then makes them
all visible again, so nothing is removed. Redrive uses StartMessageMoveTask where the
endpoint has it, otherwise receives, sends back with the original body and deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cloudqueue import DeadLetter, QueueNotFound
from cloudqueue.clock import parse_time

from . import _wire
from ._errors import error_code, translated

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

_HOLD_SECONDS = 30  # how long a scan hides the messages it has looked at
_EMPTY_ROUNDS = 3  # short polls sample servers: an empty answer is not proof of an empty queue
#: StartMessageMoveTask answers from endpoints that do not implement it
_NO_MOVE_TASK = frozenset({"InvalidAction", "UnsupportedOperation", "NotImplemented",
                           "AWS.SimpleQueueService.UnsupportedOperation", "InternalFailure",
                           "InternalError"})


def _scan(client: SQSClient, url: str, limit: int | None) -> list[MessageTypeDef]:
    """Receive up to ``limit`` messages (all when None), hiding them for a while."""
    with translated("GetQueueAttributes(dead letters)"):
        attrs = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    expected = int(attrs.get("ApproximateNumberOfMessages", 0))
    seen: dict[str, MessageTypeDef] = {}
    empty = 0
    while (limit is None or len(seen) < limit) and empty < _EMPTY_ROUNDS and \
            (len(seen) < expected or empty == 0):
        want = 10 if limit is None else min(10, limit - len(seen))
        with translated("ReceiveMessage(dead letters)"):
            got = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=want, VisibilityTimeout=_HOLD_SECONDS,
                MessageAttributeNames=["All"], WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId",
                                             "SentTimestamp"]).get("Messages") or []
        fresh = [m for m in got if m.get("MessageId") not in seen]
        empty = 0 if fresh else empty + 1
        for message in fresh:
            seen[message.get("MessageId", "")] = message
        if not got and len(seen) >= expected:
            break
    return list(seen.values())


def _show_again(client: SQSClient, url: str, messages: Sequence[MessageTypeDef]) -> None:
    for start in range(0, len(messages), 10):
        entries: list[Any] = [{"Id": str(n), "ReceiptHandle": m.get("ReceiptHandle", ""),
                               "VisibilityTimeout": 0}
                              for n, m in enumerate(messages[start:start + 10])]
        with translated("ChangeMessageVisibilityBatch(dead letters)"):
            client.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _letter(message: MessageTypeDef) -> DeadLetter:
    attributes = _wire.string_attributes(message.get("MessageAttributes"))
    system = message.get("Attributes") or {}
    reason = attributes.get(_wire.REASON) or (
        "max receives exceeded: moved by the queue's redrive policy (received maxReceiveCount "
        "times without being settled; a consumer died or timed out)")
    body = _wire.body_bytes(message.get("Body", ""), message.get("MessageAttributes"))
    job_type = None
    try:
        from cloudqueue.envelope import decode

        job_type = decode(body).type
    except ValueError:
        pass  # poison: no job type to show
    at: datetime | None = None
    if _wire.DEAD_AT in attributes:
        try:
            at = parse_time(attributes[_wire.DEAD_AT])
        except ValueError:
            at = None
    attempts = attributes.get(_wire.ATTEMPTS)
    return DeadLetter(message_id=message.get("MessageId", ""), body=body, reason=reason,
                      job_type=job_type, dead_lettered_at=at,
                      attempts=int(attempts) if attempts and attempts.isdigit() else
                      int(system.get("ApproximateReceiveCount", 0)) or None)


def peek(client: SQSClient, url: str, *, limit: int = 100) -> list[DeadLetter]:
    """List up to ``limit`` dead letters with their reasons, removing none."""
    messages = _scan(client, url, limit)
    try:
        return [_letter(m) for m in messages]
    finally:
        _show_again(client, url, messages)


def start_move_task(client: SQSClient, source_arn: str, dead_letter_url: str) -> int | None:
    """Start StartMessageMoveTask back to the source; None when the endpoint lacks it."""
    with translated("GetQueueAttributes(dead letters)"):
        attrs = client.get_queue_attributes(
            QueueUrl=dead_letter_url,
            AttributeNames=["QueueArn", "ApproximateNumberOfMessages"])["Attributes"]
    try:
        client.start_message_move_task(SourceArn=attrs["QueueArn"], DestinationArn=source_arn)
    except Exception as exc:
        if error_code(exc) in _NO_MOVE_TASK or _is_server_error(exc):
            return None
        with translated("StartMessageMoveTask"):
            raise
    return int(attrs.get("ApproximateNumberOfMessages", 0))


def _is_server_error(exc: BaseException) -> bool:
    response: Any = getattr(exc, "response", None)
    try:
        return int(response["ResponseMetadata"]["HTTPStatusCode"]) >= 500
    except (TypeError, KeyError, ValueError):
        return False


def move_back(client: SQSClient, dead_letter_url: str, queue_url: str, *, fifo: bool,
              message_ids: Sequence[str] | None = None) -> int:
    """Move dead letters (all, or those ids) back to the queue by receive/send/delete.

    The body goes back unchanged; the dead-letter attributes are dropped.

    Raises:
        QueueNotFound: an id in ``message_ids`` is not in dead letters (nothing is moved).
    """
    messages = _scan(client, dead_letter_url, None)
    wanted: Callable[[MessageTypeDef], bool] = (
        (lambda m: True) if message_ids is None else (lambda m: m.get("MessageId") in set(message_ids)))
    chosen = [m for m in messages if wanted(m)]
    others = [m for m in messages if not wanted(m)]
    if message_ids is not None:
        missing = set(message_ids) - {m.get("MessageId") for m in chosen}
        if missing:
            _show_again(client, dead_letter_url, messages)
            raise QueueNotFound(f"no dead letter with id {', '.join(sorted(missing))} in this queue")
    try:
        for message in chosen:
            params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message.get("Body", "")}
            carried = {name: value for name, value in (message.get("MessageAttributes") or {}).items()
                       if name not in _wire.DEAD_LETTER_ATTRIBUTES}
            if carried:
                params["MessageAttributes"] = carried
            if fifo:
                system = message.get("Attributes") or {}
                params["MessageGroupId"] = system.get("MessageGroupId") or message.get("MessageId")
                params["MessageDeduplicationId"] = f"redrive-{message.get('MessageId')}"[:128]
            with translated("SendMessage(redrive)"):
                client.send_message(**params)
            with translated("DeleteMessage(dead letters)"):
                client.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message.get("ReceiptHandle", ""))
    finally:
        _show_again(client, dead_letter_url, others)
    return len(chosen)
