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
from functools import lru_cache
from typing import Any

from pydantic_core import CoreSchema, SchemaValidator, to_json
from pydantic_core import core_schema as cs

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


@lru_cache(maxsize=1024)
def _quoted(text: str) -> bytes:
    return _dumps(text).encode()


def encode(*, job_id: str, app: str, job_type: str, time: datetime, data: Any = None,
           data_json: bytes | None = None, key: str | None = None,
           not_before: datetime | None = None, traceparent: str | None = None) -> bytes:
    """Serialize an envelope.

    Args:
        data: the payload as JSON-compatible data, or
        data_json: the payload already serialized (e.g. by pydantic's ``dump_json``).
    """
    if data_json is None:
        data_json = to_json(data)
    quoted_id = b'"%s"' % job_id.encode() if job_id.isascii() and job_id.isalnum() \
        else _dumps(job_id).encode()
    parts = [b'{"specversion":"1.0","id":', quoted_id,
             b',"source":', _quoted(f"cloudqueue://{app}"), b',"type":', _quoted(job_type),
             b',"time":"', format_time(time).encode(),
             b'","datacontenttype":"application/json","data":', data_json, b',"cqv":1']
    if key is not None:
        parts += (b',"cqkey":', _dumps(key).encode())
    if not_before is not None:
        parts += (b',"cqnotbefore":"', format_time(not_before).encode(), b'"')
    if traceparent is not None:
        parts += (b',"traceparent":', _dumps(traceparent).encode())
    parts.append(b"}")
    return b"".join(parts)


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



_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$"


def envelope_validator(jobs: dict[str, CoreSchema]) -> SchemaValidator:
    """A validator for envelopes of these job types (name -> payload core schema), in one pass.

    It parses the JSON and checks the envelope and the payload together in
    pydantic-core, returning a dict whose ``data`` is the validated payload. It accepts
    nothing ``decode`` would refuse; callers use ``decode`` to explain a refusal.
    """
    text = cs.str_schema(min_length=1, strict=True)
    moment = cs.str_schema(pattern=_TIME, strict=True)
    optional_text = cs.typed_dict_field(cs.str_schema(strict=True), required=False)

    def shape(name: str, payload: CoreSchema) -> CoreSchema:
        return cs.typed_dict_schema({
            "specversion": cs.typed_dict_field(cs.literal_schema([SPECVERSION])),
            "id": cs.typed_dict_field(text), "source": cs.typed_dict_field(text),
            "type": cs.typed_dict_field(cs.literal_schema([name])),
            "time": cs.typed_dict_field(moment),
            "datacontenttype": cs.typed_dict_field(cs.literal_schema([CONTENT_TYPE]), required=False),
            "data": cs.typed_dict_field(payload),
            "cqv": cs.typed_dict_field(cs.int_schema(strict=True, ge=ENVELOPE_VERSION, le=ENVELOPE_VERSION)),
            "cqkey": optional_text, "traceparent": optional_text,
            "cqnotbefore": cs.typed_dict_field(moment, required=False),
        })

    shapes = {name: shape(name, payload) for name, payload in jobs.items()}
    if len(shapes) == 1:
        [schema] = shapes.values()
    else:
        schema = cs.tagged_union_schema(shapes, discriminator="type")
    return SchemaValidator(schema)
