"""The wire format: one CloudEvents 1.0 JSON envelope on every backend.

    {"specversion": "1.0", "id": "<job id>", "source": "cloudqueue://<app>",
     "type": "<job type>", "time": "<RFC 3339>", "datacontenttype": "application/json",
     "data": {...payload...}, "cqv": 1,
     "cqkey": "<idempotency key>", "cqnotbefore": "<RFC 3339>", "traceparent": "..."}

``cqkey``, ``cqnotbefore`` and ``traceparent`` appear only when set. The attempt number
is never written here: it comes from the backend.

Version 2 is the claim check: a payload too large for the queue lives in an object store
and the envelope carries a reference instead of ``data`` (CloudEvents' ``dataref``
extension), with the stored bytes' digest and size::

    {..., "datacontenttype": "application/json", "cqv": 2,
     "dataref": "s3://bucket/prefix/<job id>/<sha256>", "cqdigest": "sha256:<64 hex>",
     "cqsize": 5242880, ...}

A message without a reference stays version 1, so consumers that read only version 1
still take every message that does not need more. A consumer that reads only version 1
refuses a version 2 envelope as poison, naming the version it would need: never does a
job run with a payload it could not fetch.

Two parsers read it and accept exactly the same bodies: ``envelope_validator`` (one
pydantic-core pass over envelope and payload, the hot path) and ``decode`` (which
explains a refusal). The rules both follow:

- JSON as pydantic-core parses it (both paths use that parser): UTF-8 only, no byte
  order mark, no lone surrogates, nesting at most 200 deep; a repeated key keeps its
  last value; ``NaN``/``Infinity`` are numbers (only a payload field can take them).
- ``specversion`` is the string ``"1.0"``; ``cqv`` the JSON integer ``1`` (not ``true``,
  not ``1.0``); ``id``, ``source``, ``type`` are non-empty strings; ``data`` is present.
  (Or ``cqv`` is ``2``: no ``data``, and ``dataref`` a non-empty string, ``cqdigest``
  ``"sha256:"`` and 64 lowercase hex digits, ``cqsize`` a non-negative JSON integer. Only
  ``decode`` reads version 2: the fast path refuses it, and the dispatcher's slow path
  fetches the payload.)
- ``time`` and ``cqnotbefore`` are RFC 3339 date-times that exist: a real calendar date
  in years 0001-9999, hours 00-23, seconds 00-59 (no leap second), any number of
  fractional digits, ``T``, ``t`` or a space between date and time (RFC 3339 allows
  it), and ``Z``/``z`` or an offset from -23:59 to +23:59. On 0001-01-01 and 9999-12-31
  only a zero offset is taken, so every time converts to UTC.
- Optional attributes (``datacontenttype``, ``cqkey``, ``cqnotbefore``, ``traceparent``)
  may be ``null``, which means absent (as the CloudEvents JSON format says); when set
  they are strings, and ``datacontenttype`` is the media type ``application/json`` (its
  letters in any case) with any media-type parameters, as CloudEvents allows
  (``application/json; charset=utf-8``): ``; name=value`` with optional spaces or tabs
  around the ``;``, a token or a quoted string as the value.
- Other attributes are ignored. (``cqflow`` and ``cqflowparent`` mark a flow's child and
  parent; the flows' run step reads them from the body, see ``cloudqueue.flows``.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic_core import CoreSchema, SchemaValidator, from_json, to_json
from pydantic_core import core_schema as cs

from .clock import format_time, parse_time

ENVELOPE_VERSION = 1
#: the version of an envelope whose payload is in a payload store (``dataref``)
REFERENCE_VERSION = 2
#: every envelope version this library reads
READ_VERSIONS = (ENVELOPE_VERSION, REFERENCE_VERSION)
SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

_REQUIRED_STR = ("id", "source", "type", "time")
_OPTIONAL_STR = ("cqkey", "cqnotbefore", "traceparent")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

# RFC 3339 date-times that exist, as one regular expression both parsers share: the fast
# path runs it in pydantic-core (Rust, no Python call per record), ``decode`` in ``re``.
# ASCII digits only ([0-9], never \d, which takes any script's digits).
_MD31 = "(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
_MD30 = "(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
_FEB = "02-(?:0[1-9]|1[0-9]|2[0-8])"
_YEAR_INNER = "(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (f"(?:{_YEAR_INNER}-(?:{_MD31}|{_MD30}|{_FEB})|{_LEAP}-02-29"
         # year 1 but its first day, year 9999 but its last: those take any offset
         f"|0001-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[3578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
         f"|{_MD30}|{_FEB})"
         f"|9999-(?:(?:0[13578]|10)-(?:0[1-9]|[12][0-9]|3[01])|{_MD30}|{_FEB}"
         f"|12-(?:0[1-9]|[12][0-9]|30)))")
_CLOCK = "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_RFC3339 = f"(?:{_DATE}{_CLOCK}{_OFFSET}|(?:0001-01-01|9999-12-31){_CLOCK}(?:[Zz]|[+-]00:00))"
_TIME = f"^{_RFC3339}$"
_is_time = re.compile(_RFC3339).fullmatch
# RFC 9110 media type: type "/" subtype *( OWS ";" OWS name "=" ( token / quoted-string ) ).
# Letters spelled as classes, not a case-insensitive flag: Python's and Rust's regex engines
# fold other characters than ASCII differently (the Kelvin sign, the long s).
_MEDIA_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = ("[Aa][Pp][Pp][Ll][Ii][Cc][Aa][Tt][Ii][Oo][Nn]/[Jj][Ss][Oo][Nn]"
               rf'(?:[ \t]*;[ \t]*{_MEDIA_TOKEN}=(?:{_MEDIA_TOKEN}|"(?:[^"\\]|\\.)*"))*')
_is_json_media_type = re.compile(_MEDIA_TYPE).fullmatch


class EnvelopeError(ValueError):
    """Bytes that are not a cloudqueue envelope (the dispatcher treats them as poison)."""


_DIGEST = re.compile("sha256:[0-9a-f]{64}").fullmatch


@dataclass(frozen=True, slots=True)
class DataRef:
    """Where a version 2 envelope's payload is: the stored object and what it must be.

    Attributes:
        ref: the object's URI in its payload store (``s3://bucket/prefix/<key>``).
        digest: ``"sha256:<hex>"`` of the stored bytes.
        size: the stored bytes' length.
    """

    ref: str
    digest: str
    size: int


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
    #: version 2: where the payload is (``data`` is None then)
    data_ref: DataRef | None = None

    @property
    def enqueued_at(self) -> datetime:
        return parse_time(self.time)

    @property
    def not_before_at(self) -> datetime | None:
        return parse_time(self.not_before) if self.not_before is not None else None


@lru_cache(maxsize=1024)
def _quoted(text: str) -> bytes:
    return _dumps(text).encode()


@lru_cache(maxsize=1024)
def _head(app: str, job_type: str) -> bytes:
    """The envelope's attributes between ``id`` and ``time``, the same for every job of a type."""
    return b',"source":%s,"type":%s,"time":"' % (_quoted(f"cloudqueue://{app}"), _quoted(job_type))


def encode(*, job_id: str, app: str, job_type: str, time: datetime | str, data: Any = None,
           data_json: bytes | None = None, key: str | None = None,
           not_before: datetime | None = None, traceparent: str | None = None,
           plain_id: bool = False) -> bytes:
    """Serialize an envelope.

    Args:
        time: when it was enqueued: an aware datetime, or its text as ``format_time`` writes it.
        data: the payload as JSON-compatible data, or
        data_json: the payload already serialized (e.g. by pydantic's ``dump_json``).
        plain_id: ``job_id`` is known to be letters and digits only (it needs no escaping).
    """
    if data_json is None:
        data_json = to_json(data)
    quoted_id = job_id.encode() if plain_id or (job_id.isascii() and job_id.isalnum()) \
        else _dumps(job_id).encode()[1:-1]
    body = b'{"specversion":"1.0","id":"%s"%s%s","datacontenttype":"application/json","data":%s,"cqv":1' % (
        quoted_id, _head(app, job_type), (time if type(time) is str else format_time(time)).encode(),  # type: ignore[arg-type]
        data_json)
    if key is None and not_before is None and traceparent is None:
        return body + b"}"
    return _closed([body], key, not_before, traceparent)


def _closed(parts: list[bytes], key: str | None, not_before: datetime | None, traceparent: str | None) -> bytes:
    """The envelope so far, its optional attributes (``traceparent`` last), and the brace."""
    if key is not None:
        parts += (b',"cqkey":', _dumps(key).encode())
    if not_before is not None:
        parts += (b',"cqnotbefore":"', format_time(not_before).encode(), b'"')
    if traceparent is not None:
        parts += (b',"traceparent":', _dumps(traceparent).encode())
    parts.append(b"}")
    return b"".join(parts)


def encode_reference(*, job_id: str, app: str, job_type: str, time: datetime | str, data_ref: DataRef,
                     key: str | None = None, not_before: datetime | None = None,
                     traceparent: str | None = None) -> bytes:
    """Serialize a version 2 envelope: ``data_ref`` in place of ``data`` (the claim check).

    ``traceparent`` stays the last attribute, as ``encode`` writes it, so
    ``with_traceparent`` works on both.
    """
    parts = [b'{"specversion":"1.0","id":', _dumps(job_id).encode(), _head(app, job_type),
             (time if type(time) is str else format_time(time)).encode(),  # type: ignore[arg-type]
             b'","datacontenttype":"application/json","cqv":%d' % REFERENCE_VERSION,
             b',"dataref":', _dumps(data_ref.ref).encode(), b',"cqdigest":', _dumps(data_ref.digest).encode(),
             b',"cqsize":%d' % data_ref.size]
    return _closed(parts, key, not_before, traceparent)


_TRACEPARENT_ATTR = b',"traceparent":'
_PLAIN_TRACEPARENT = re.compile(rb'"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"').fullmatch


def with_traceparent(body: bytes, traceparent: str) -> bytes:
    """``body`` with its ``traceparent`` attribute set to ``traceparent``, without parsing it.

    ``encode`` writes ``traceparent`` last, so the value between it and the closing brace
    is replaced (or the attribute added before that brace). A body written otherwise gets
    the attribute appended: a repeated key keeps its last value, so both parsers read the
    new one. A body that is not a JSON object comes back unchanged (it is poison anyway).
    """
    end = len(body.rstrip()) - 1
    if end < 1 or body[end] != 0x7D:  # "}"
        return body
    value = _dumps(traceparent).encode()
    at = body.rfind(_TRACEPARENT_ATTR, 0, end)
    if at >= 0 and _is_last_value(body[at + len(_TRACEPARENT_ATTR):end]):
        return b"".join((body[:at], _TRACEPARENT_ATTR, value, b"}"))
    return b"".join((body[:end], _TRACEPARENT_ATTR, value, body[end:]))


def _is_last_value(tail: bytes) -> bool:
    """Whether ``tail`` is one JSON string or null: the envelope's own last attribute, not
    a key of the same name inside the payload (whose object would close in ``tail``)."""
    if _PLAIN_TRACEPARENT(tail) is not None or tail == b"null":
        return True
    if not tail.startswith(b'"'):
        return False
    try:
        return type(from_json(tail)) is str
    except ValueError:
        return False


def decode(body: bytes | str) -> Envelope:
    """Parse bytes into an ``Envelope``, strictly (the rules are in this module's docstring).

    Raises:
        EnvelopeError: not JSON, not an object, a missing or mistyped attribute, a time
            that does not exist, a foreign specversion or an envelope version newer than
            this library.
    """
    try:
        raw = from_json(body)  # the parser the fast path uses, so both read the same JSON
    except (ValueError, TypeError) as exc:
        raise EnvelopeError(f"body is not JSON ({exc}); fix the producer to send a "
                            f"UTF-8 JSON object") from None
    return from_dict(raw)


def from_dict(raw: Any) -> Envelope:
    """Validate an already-parsed envelope object."""
    if type(raw) is not dict:
        raise EnvelopeError(f"body is JSON {type(raw).__name__}, not an envelope object")
    job = raw.get("type")
    where = f"job {job!r}: " if type(job) is str and job else ""
    specversion = raw.get("specversion")
    if type(specversion) is not str or specversion != SPECVERSION:
        raise EnvelopeError(f"{where}specversion is {specversion!r}, expected {SPECVERSION!r}")
    version = raw.get("cqv")
    if type(version) is not int or version not in READ_VERSIONS:
        newest = max(READ_VERSIONS)
        if type(version) is int and version > newest:
            raise EnvelopeError(f"{where}envelope version {version} is newer than this cloudqueue "
                                f"reads (versions {', '.join(map(str, READ_VERSIONS))}); upgrade "
                                f"cloudqueue to a release that reads envelope version {version}, "
                                f"then redrive")
        raise EnvelopeError(f"{where}cqv is {version!r}, expected the JSON integer {ENVELOPE_VERSION}"
                            f" (or {REFERENCE_VERSION} with a dataref)")
    for name in _REQUIRED_STR:
        value = raw.get(name)
        if type(value) is not str or not value:
            raise EnvelopeError(f"{where}attribute {name!r} must be a non-empty string, got {value!r}")
    data_ref = None
    if version == REFERENCE_VERSION:
        data_ref = _data_ref(raw, where)
    elif "data" not in raw:
        raise EnvelopeError(f"{where}attribute 'data' is missing")
    content_type = raw.get("datacontenttype")
    if content_type is not None and (type(content_type) is not str
                                     or (content_type != CONTENT_TYPE and not _is_json_media_type(content_type))):
        raise EnvelopeError(f"{where}datacontenttype is {content_type!r}, expected {CONTENT_TYPE!r} "
                            f"with optional parameters (e.g. 'application/json; charset=utf-8'), "
                            f"or leave it out")
    for name in _OPTIONAL_STR:
        value = raw.get(name)
        if value is not None and type(value) is not str:
            raise EnvelopeError(f"{where}attribute {name!r} must be a string or absent, got {value!r}")
    key, not_before, traceparent = raw.get("cqkey"), raw.get("cqnotbefore"), raw.get("traceparent")
    for name, value in (("time", raw["time"]), ("cqnotbefore", not_before)):
        if value is not None and not _real_time(value):
            raise EnvelopeError(f"{where}attribute {name!r} is not an RFC 3339 time that exists: "
                                f"{value!r}; expected e.g. '2030-01-02T03:04:05.000000Z' (a real "
                                f"date in years 0001-9999, hours 00-23, an offset within 23:59)")
    return Envelope(id=raw["id"], source=raw["source"], type=raw["type"], time=raw["time"],
                    data=raw.get("data"), key=key, not_before=not_before, traceparent=traceparent,
                    data_ref=data_ref)


def _data_ref(raw: dict[str, Any], where: str) -> DataRef:
    """The reference of a version 2 envelope, checked: it carries no ``data``."""
    if "data" in raw:
        raise EnvelopeError(f"{where}envelope version {REFERENCE_VERSION} carries its payload by reference "
                            f"(dataref) and must not carry 'data' as well")
    ref, digest, size = raw.get("dataref"), raw.get("cqdigest"), raw.get("cqsize")
    if type(ref) is not str or not ref:
        raise EnvelopeError(f"{where}envelope version {REFERENCE_VERSION} needs 'dataref', the payload "
                            f"object's URI, as a non-empty string; got {ref!r}")
    if type(digest) is not str or _DIGEST(digest) is None:
        raise EnvelopeError(f"{where}envelope version {REFERENCE_VERSION} needs 'cqdigest' as "
                            f"'sha256:<64 lowercase hex digits>'; got {digest!r}")
    if type(size) is not int or size < 0:
        raise EnvelopeError(f"{where}envelope version {REFERENCE_VERSION} needs 'cqsize', the payload's "
                            f"size in bytes, as a non-negative JSON integer; got {size!r}")
    return DataRef(ref, digest, size)


def _real_time(text: str) -> bool:
    """The shared RFC 3339 rule, checked against what ``parse_time`` makes of it too."""
    if _is_time(text) is None:
        return False
    try:
        parse_time(text)
    except (ValueError, OverflowError):
        return False
    return True


def envelope_validator(jobs: dict[str, CoreSchema]) -> SchemaValidator:
    """A validator for envelopes of these job types (name -> payload core schema), in one pass.

    It parses the JSON and checks the envelope and the payload together in
    pydantic-core, returning a dict whose ``data`` is the validated payload. It accepts
    exactly the envelopes ``decode`` accepts (whose payload validates); callers use
    ``decode`` to explain a refusal. An optional attribute sent as ``null`` comes back
    as ``None``, so read them with ``.get``.
    """
    text = cs.str_schema(min_length=1, strict=True)
    moment = cs.str_schema(pattern=_TIME, strict=True)

    def optional(schema: CoreSchema) -> cs.TypedDictField:
        return cs.typed_dict_field(cs.nullable_schema(schema), required=False)

    def shape(name: str, payload: CoreSchema) -> CoreSchema:
        return cs.typed_dict_schema({
            "specversion": cs.typed_dict_field(cs.literal_schema([SPECVERSION])),
            "id": cs.typed_dict_field(text), "source": cs.typed_dict_field(text),
            "type": cs.typed_dict_field(cs.literal_schema([name])),
            "time": cs.typed_dict_field(moment),
            "datacontenttype": optional(cs.str_schema(pattern=f"^{_MEDIA_TYPE}$", strict=True)),
            "data": cs.typed_dict_field(payload),
            "cqv": cs.typed_dict_field(cs.int_schema(strict=True, ge=ENVELOPE_VERSION, le=ENVELOPE_VERSION)),
            "cqkey": optional(cs.str_schema(strict=True)),
            "traceparent": optional(cs.str_schema(strict=True)),
            "cqnotbefore": optional(moment),
        })

    shapes = {name: shape(name, payload) for name, payload in jobs.items()}
    if len(shapes) == 1:
        [schema] = shapes.values()
    else:
        schema = cs.tagged_union_schema(shapes, discriminator="type")
    return SchemaValidator(schema)
