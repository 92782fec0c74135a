"""How a cloudqueue message travels on SQS: body text, attributes, FIFO ids.

SQS bodies are text limited to XML characters. An envelope always is; a body that is
not (bytes that are not UTF-8, or control characters) travels base64-encoded with the
attribute ``cq-body-encoding: base64``, so it still arrives byte for byte and is
dead-lettered as poison rather than refused by the queue.

Dead letters carry the original body unchanged and the reason in attributes:
``cq-reason``, ``cq-source-message-id``, ``cq-dead-lettered-at``, ``cq-attempts``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cloudqueue.clock import format_time

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

ENCODING = "cq-body-encoding"
REASON = "cq-reason"
SOURCE_ID = "cq-source-message-id"
DEAD_AT = "cq-dead-lettered-at"
ATTEMPTS = "cq-attempts"
DEAD_LETTER_ATTRIBUTES = frozenset({REASON, SOURCE_ID, DEAD_AT, ATTEMPTS})

#: longest reason kept in an attribute (attributes count towards the message size)
REASON_LIMIT = 2048
#: the longest visibility timeout SQS accepts (12 hours)
MAX_VISIBILITY_SECONDS = 43200
MAX_DELAY_SECONDS = 900

_NOT_SQS_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DEDUP_ID = re.compile(r"[!-~]{1,128}")


def body_text(body: bytes) -> tuple[str, dict[str, MessageAttributeValueTypeDef]]:
    """The SQS body for ``body``, and the attributes it needs (base64 when not SQS text)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _NOT_SQS_TEXT.search(text) is None:
        return text, {}
    return (base64.b64encode(body).decode("ascii"),
            {ENCODING: {"DataType": "String", "StringValue": "base64"}})


def body_bytes(text: str, attributes: Mapping[str, Any] | None) -> bytes:
    """The original bytes of a received body (undoing ``body_text``)."""
    if attributes:
        encoding = attributes.get(ENCODING)
        if encoding is not None and _string_value(encoding) == "base64":
            return base64.b64decode(text)
    return text.encode("utf-8")


def _string_value(attribute: Any) -> str | None:
    # boto3 says StringValue, a Lambda event record says stringValue
    if isinstance(attribute, Mapping):
        value = attribute.get("StringValue", attribute.get("stringValue"))
        return None if value is None else str(value)
    return None


def string_attributes(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The string values of message attributes (boto3 or Lambda-event spelling)."""
    out: dict[str, str] = {}
    for name, attribute in (attributes or {}).items():
        value = _string_value(attribute)
        if value is not None:
            out[name] = value
    return out


def carried_attributes(attributes: Mapping[str, Any] | None, *, keep: int = 10,
                       ) -> dict[str, MessageAttributeValueTypeDef]:
    """A received message's attributes in SendMessage spelling, to send on with it.

    Takes boto3's (``StringValue``) or a Lambda record's (``stringValue``) spelling,
    String, Number and Binary types; drops cloudqueue's own dead-letter attributes and
    keeps at most ``keep`` (SQS takes 10 a message).
    """
    out: dict[str, MessageAttributeValueTypeDef] = {}
    for name, attribute in (attributes or {}).items():
        if len(out) >= keep:
            break
        if name in DEAD_LETTER_ATTRIBUTES or name == ENCODING or not isinstance(attribute, Mapping):
            continue
        data_type = str(attribute.get("DataType") or attribute.get("dataType") or "String")
        string = attribute.get("StringValue", attribute.get("stringValue"))
        binary = attribute.get("BinaryValue", attribute.get("binaryValue"))
        if string is not None:
            out[name] = {"DataType": data_type, "StringValue": str(string)}
        elif binary is not None:
            value = base64.b64decode(binary) if isinstance(binary, str) else bytes(binary)
            out[name] = {"DataType": data_type, "BinaryValue": value}
    return out


def message_size(text: str, attributes: Mapping[str, MessageAttributeValueTypeDef]) -> int:
    """Bytes SQS counts for a message: the body plus each attribute's name, type and value."""
    size = len(text.encode("utf-8"))
    for name, attribute in attributes.items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(str(attribute.get("StringValue", "")).encode())
    return size


def dedup_id(idempotency_key: str | None, text: str) -> str:
    """A FIFO MessageDeduplicationId: the idempotency key as is when SQS accepts it, else a hash."""
    if idempotency_key is not None:
        if _DEDUP_ID.fullmatch(idempotency_key):
            return idempotency_key
        return hashlib.sha256(idempotency_key.encode()).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def visibility_seconds(seconds: float) -> int:
    """A visibility timeout SQS accepts: whole seconds, rounded up, at most 12 hours."""
    whole = int(seconds) + (seconds % 1 > 0)
    return max(0, min(whole, MAX_VISIBILITY_SECONDS))


def delay_seconds(seconds: float) -> int:
    """A DelaySeconds SQS accepts: whole seconds, rounded up, at most 15 minutes."""
    whole = int(seconds) + (seconds % 1 > 0)
    return max(0, min(whole, MAX_DELAY_SECONDS))


def dead_letter_attributes(*, reason: str, source_message_id: str, attempt: int, now: datetime,
                           carried: Mapping[str, Any] | None = None,
                           ) -> dict[str, MessageAttributeValueTypeDef]:
    """The attributes of a message sent to dead letters: why, from which message, when."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        REASON: {"DataType": "String", "StringValue": reason[:REASON_LIMIT] or "dead-lettered"},
        SOURCE_ID: {"DataType": "String", "StringValue": source_message_id},
        DEAD_AT: {"DataType": "String", "StringValue": format_time(now)},
        ATTEMPTS: {"DataType": "Number", "StringValue": str(attempt)},
    }
    encoding = _string_value((carried or {}).get(ENCODING))
    if encoding is not None:
        attributes[ENCODING] = {"DataType": "String", "StringValue": encoding}
    return attributes
