"""The wire format: one CloudEvents 1.0 JSON envelope on every backend.

    {"specversion": "1.0", "id": "<job id>", "source": "cloudqueue://<app>",
     "type": "<job type>", "time": "<RFC 3339>", "datacontenttype": "application/json",
     "data": {...payload...}, "cqv": 1,
     "cqkey": "<idempotency key>", "cqnotbefore": "<RFC 3339>", "traceparent": "..."}

``cqkey``, ``cqnotbefore`` and ``traceparent`` appear only when set. The attempt number
is never written here: it comes from the backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._clock import format_time, parse_time

ENVELOPE_VERSION = 1
SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

_REQUIRED_STR = ("id", "source", "type", "time")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads


class EnvelopeError(ValueError):
    """Bytes that are not a cloudqueue envelope (the dispatcher treats them as poison)."""


@dataclass(slots=True)
class Envelope:
    """A decoded envelope. ``time`` and ``not_before`` stay RFC 3339 text until asked for."""

    id: str
    source: str
    type: str
    time: str
    data: Any
    key: str | None = None
    not_before: str | None = None
    traceparent: str | None = None

    @property
    def enqueued_at(self) -> datetime:
        return parse_time(self.time)

    @property
    def not_before_at(self) -> datetime | None:
        return parse_time(self.not_before) if self.not_before is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": SPECVERSION, "id": self.id, "source": self.source,
            "type": self.type, "time": self.time, "datacontenttype": CONTENT_TYPE,
            "data": self.data, "cqv": ENVELOPE_VERSION,
        }
        if self.key is not None:
            out["cqkey"] = self.key
        if self.not_before is not None:
            out["cqnotbefore"] = self.not_before
        if self.traceparent is not None:
            out["traceparent"] = self.traceparent
        return out

    def encode(self) -> bytes:
        """Serialize to UTF-8 JSON bytes."""
        return _dumps(self.to_dict()).encode()


def encode(*, job_id: str, app: str, job_type: str, time: datetime, data: Any,
           key: str | None = None, not_before: datetime | None = None,
           traceparent: str | None = None) -> bytes:
    """Build and serialize an envelope for ``data`` (already JSON-compatible)."""
    return Envelope(
        id=job_id, source=f"cloudqueue://{app}", type=job_type, time=format_time(time),
        data=data, key=key,
        not_before=format_time(not_before) if not_before is not None else None,
        traceparent=traceparent,
    ).encode()


def decode(body: bytes | str) -> Envelope:
    """Parse bytes into an ``Envelope``, strictly.

    Raises:
        EnvelopeError: not JSON, not an object, a missing or mistyped attribute,
            a foreign specversion or an envelope version newer than this library.
    """
    try:
        raw = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"body is not JSON ({exc})") from None
    return from_dict(raw)


def from_dict(raw: Any) -> Envelope:
    """Validate an already-parsed envelope object."""
    if type(raw) is not dict:
        raise EnvelopeError(f"body is JSON {type(raw).__name__}, not an envelope object")
    if raw.get("specversion") != SPECVERSION:
        raise EnvelopeError(f"specversion is {raw.get('specversion')!r}, expected {SPECVERSION!r}")
    version = raw.get("cqv")
    if version != ENVELOPE_VERSION:
        if type(version) is int and version > ENVELOPE_VERSION:
            raise EnvelopeError(f"envelope version {version} is newer than this cloudqueue "
                                f"understands ({ENVELOPE_VERSION}); upgrade cloudqueue")
        raise EnvelopeError(f"cqv is {version!r}, expected {ENVELOPE_VERSION}")
    for name in _REQUIRED_STR:
        value = raw.get(name)
        if type(value) is not str or not value:
            raise EnvelopeError(f"attribute {name!r} must be a non-empty string, got {value!r}")
    if "data" not in raw:
        raise EnvelopeError("attribute 'data' is missing")
    content_type = raw.get("datacontenttype", CONTENT_TYPE)
    if content_type != CONTENT_TYPE:
        raise EnvelopeError(f"datacontenttype is {content_type!r}, expected {CONTENT_TYPE!r}")
    key = raw.get("cqkey")
    not_before = raw.get("cqnotbefore")
    traceparent = raw.get("traceparent")
    for name, value in (("cqkey", key), ("cqnotbefore", not_before), ("traceparent", traceparent)):
        if value is not None and type(value) is not str:
            raise EnvelopeError(f"attribute {name!r} must be a string, got {value!r}")
    for name, value in (("time", raw["time"]), ("cqnotbefore", not_before)):
        if value is not None:
            try:
                parse_time(value)
            except ValueError:
                raise EnvelopeError(f"attribute {name!r} is not an RFC 3339 time: {value!r}") from None
    return Envelope(id=raw["id"], source=raw["source"], type=raw["type"], time=raw["time"],
                    data=raw["data"], key=key, not_before=not_before, traceparent=traceparent)
