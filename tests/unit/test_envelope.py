"""The wire format: CloudEvents 1.0 JSON, versioned, parsed strictly."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from pydantic_core import ValidationError, core_schema

from cloudqueue import envelope
from cloudqueue.envelope import EnvelopeError, decode

T0 = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)


def _body(**over: object) -> bytes:
    raw = json.loads(envelope.encode(job_id="j1", app="shop", job_type="send", time=T0,
                                     data={"a": 1}))
    raw.update(over)
    return json.dumps({k: v for k, v in raw.items() if v is not None}).encode()


def test_envelope_carries_the_cloudevents_attributes_and_nothing_about_attempts() -> None:
    body = envelope.encode(job_id="j1", app="shop", job_type="send", time=T0, data={"a": 1},
                           key="k-1", not_before=T0, traceparent="00-abc-def-01")
    raw = json.loads(body)
    assert raw == {
        "specversion": "1.0", "id": "j1", "source": "cloudqueue://shop", "type": "send",
        "time": "2030-01-02T03:04:05.123456Z", "datacontenttype": "application/json",
        "data": {"a": 1}, "cqv": 1, "cqkey": "k-1", "cqnotbefore": "2030-01-02T03:04:05.123456Z",
        "traceparent": "00-abc-def-01",
    }
    assert not any("attempt" in key for key in raw)


def test_optional_attributes_are_left_out_when_unset() -> None:
    raw = json.loads(envelope.encode(job_id="j1", app="a", job_type="t", time=T0, data=None))
    assert "cqkey" not in raw and "cqnotbefore" not in raw and "traceparent" not in raw


def test_decode_round_trips() -> None:
    env = decode(envelope.encode(job_id="j1", app="shop", job_type="send", time=T0,
                                 data={"x": [1, "ü"]}, key="k"))
    assert (env.id, env.type, env.source, env.data, env.key) == ("j1", "send", "cloudqueue://shop",
                                                                 {"x": [1, "ü"]}, "k")
    assert env.enqueued_at == T0 and env.not_before_at is None


@pytest.mark.parametrize(("body", "problem"), [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "JSON list"),
    (_body(specversion="0.3"), "specversion"),
    (_body(cqv=None), "cqv"),
    (_body(cqv="1"), "cqv"),
    (_body(cqv=3), "newer than this cloudqueue reads .* envelope version 3"),
    (_body(cqv=2), "carries its payload by reference"),
    (_body(id=""), "'id'"),
    (_body(type=7), "'type'"),
    (_body(time="yesterday"), "RFC 3339"),
    (_body(cqnotbefore="soon"), "RFC 3339"),
    (_body(cqkey=5), "'cqkey'"),
    (_body(datacontenttype="text/plain"), "datacontenttype"),
])
def test_decode_rejects_what_is_not_a_valid_envelope(body: bytes, problem: str) -> None:
    with pytest.raises(EnvelopeError, match=problem):
        decode(body)


def test_decode_rejects_a_missing_data_attribute() -> None:
    raw = json.loads(_body())
    del raw["data"]
    with pytest.raises(EnvelopeError, match="'data' is missing"):
        decode(json.dumps(raw))


def test_unknown_extension_attributes_are_tolerated() -> None:
    assert decode(_body(otherext="x")).id == "j1"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        envelope.encode(job_id="j", app="a", job_type="t", time=datetime(2030, 1, 1), data=1)


# -- the fast and the slow parser agree (DESIGN.md 4b); the property test explores, these pin
FAST = envelope.envelope_validator({"send": core_schema.any_schema()})


def _fast_accepts(body: bytes | str) -> bool:
    try:
        FAST.validate_json(body)
    except ValidationError:
        return False
    return True


def _decode_accepts(body: bytes | str) -> bool:
    try:
        decode(body)
    except EnvelopeError:
        return False
    return True


def _with(name: str, raw_value: str) -> bytes:
    """The valid body with one attribute's JSON text replaced (or added)."""
    raw = json.loads(_body())
    raw[name] = "@@"
    return json.dumps(raw).replace('"@@"', raw_value).encode()


GOOD = _body()
DEEP = b'{"specversion":"1.0","id":"j","source":"s","type":"send","time":"2030-01-01T00:00:00Z","cqv":1,"data":'


@pytest.mark.parametrize(("body", "accepted"), [
    (GOOD, True),
    (_with("time", '"2030-13-45T00:00:00Z"'), False),  # used to pass the fast path, then crash
    (_with("cqnotbefore", '"2030-13-45T00:00:00Z"'), False),
    (_with("time", '"2030-02-29T00:00:00Z"'), False),
    (_with("time", '"2028-02-29T00:00:00Z"'), True),
    (_with("time", '"1900-02-29T00:00:00Z"'), False),
    (_with("time", '"2000-02-29T00:00:00Z"'), True),
    (_with("time", '"2030-04-31T00:00:00Z"'), False),
    (_with("time", '"2030-01-02T24:00:00Z"'), False),
    (_with("time", '"2030-06-30T23:59:60Z"'), False),  # a leap second: datetime cannot hold it
    (_with("time", '"2030-01-02T03:04:05+24:00"'), False),
    (_with("time", '"2030-01-02T03:04:05-23:59"'), True),
    (_with("time", '"2030-01-02T03:04:05+01:60"'), False),
    (_with("time", '"2030-01-02T03:04:05-00:00"'), True),
    (_with("time", '"2030-01-02t03:04:05z"'), True),
    (_with("time", '"2030-01-02 03:04:05Z"'), True),
    (_with("time", '"2030-01-02T03:04:05.1Z"'), True),
    (_with("time", '"2030-01-02T03:04:05.123456789Z"'), True),
    (_with("time", '"2030-01-02T03:04:05.Z"'), False),
    (_with("time", '"2030-01-02T03:04:05,5Z"'), False),
    (_with("time", '"20300102T030405Z"'), False),  # ISO 8601 basic format, not RFC 3339
    (_with("time", '"2030-01-02T03:04Z"'), False),
    (_with("time", '"2030-01-02T03:04:05+0100"'), False),
    (_with("time", '"2030-01-02T03:04:05"'), False),  # no offset
    (_with("time", '"\\u0662\\u0660\\u0663\\u0660-01-02T03:04:05Z"'), False),  # Arabic-Indic digits
    (_with("time", '"0001-01-01T00:00:00Z"'), True),
    (_with("time", '"0001-01-01T00:30:00+01:00"'), False),  # before year 1 in UTC
    (_with("time", '"9999-12-31T23:59:59.999999Z"'), True),
    (_with("time", '"9999-12-31T23:00:00-01:00"'), False),  # after 9999 in UTC
    (_with("time", '"0000-01-01T00:00:00Z"'), False),
    (_with("cqv", "true"), False),  # true == 1 in Python; the rule is the JSON integer 1
    (_with("cqv", "1.0"), False),
    (_with("cqv", "1e0"), False),
    (_with("cqv", "1" + "0" * 40), False),
    (_with("cqkey", "null"), True),  # null means absent (CloudEvents JSON format)
    (_with("cqnotbefore", "null"), True),
    (_with("traceparent", "null"), True),
    (_with("datacontenttype", "null"), True),
    (_with("cqkey", "5"), False),
    (_with("traceparent", "true"), False),
    # CloudEvents allows media-type parameters; type and subtype are case-insensitive
    (_with("datacontenttype", '"application/json; charset=utf-8"'), True),
    (_with("datacontenttype", '"Application/JSON"'), True),
    (_with("datacontenttype", '"application/json;charset=\\"utf-8\\""'), True),
    (_with("datacontenttype", '"application/json ;\\tq=\\"a\\\\\\"b\\""'), True),
    (_with("datacontenttype", '"application/json;"'), False),  # a ';' without a parameter
    (_with("datacontenttype", '"application/json\\n"'), False),  # Python's $ would take this
    (_with("datacontenttype", '" application/json"'), False),
    (_with("datacontenttype", '"application/json; x=\\u017f"'), False),  # not a token
    (_with("datacontenttype", '"application/\\u212aSON"'), False),  # the Kelvin sign folds to k
    (_with("datacontenttype", '"application/cloudevents+json"'), False),
    (_with("datacontenttype", '"text/plain; charset=utf-8"'), False),
    (_with("specversion", "1.0"), False),
    (_with("id", "null"), False),
    (_with("extension", "NaN"), True),
    (GOOD[:-1] + b',"time":"2030-13-45T00:00:00Z"}', False),  # a repeated key: the last one counts
    (b'{"time":"2030-13-45T00:00:00Z",' + GOOD[1:], True),
    (b"\xef\xbb\xbf" + GOOD, False),  # a byte order mark
    (GOOD.decode().encode("utf-16"), False),
    (_with("cqkey", '"\\ud800"'), False),  # a lone surrogate
    (GOOD[:-1] + b',"x":"\xed\xa0\x80"}', False),  # the same, as (invalid) UTF-8 bytes
    (GOOD.decode(), True),
    (DEEP + b"[" * 199 + b"]" * 199 + b"}", True),
    (DEEP + b"[" * 250 + b"]" * 250 + b"}", False),
    (DEEP + b"[" * 5000 + b"]" * 5000 + b"}", False),  # json.loads raised RecursionError here
])
def test_fast_and_slow_parsers_agree(body: bytes | str, accepted: bool) -> None:
    assert (_fast_accepts(body), _decode_accepts(body)) == (accepted, accepted)


def test_a_refusal_names_the_job_the_attribute_and_the_rule() -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(_with("cqnotbefore", '"2030-13-45T00:00:00Z"'))
    message = str(caught.value)
    assert "job 'send'" in message and "'cqnotbefore'" in message and "2030-13-45" in message
    assert "RFC 3339" in message and "e.g." in message


def test_null_optional_attributes_decode_as_absent() -> None:
    raw = json.loads(_body())
    raw.update(cqkey=None, cqnotbefore=None, traceparent=None, datacontenttype=None)
    env = decode(json.dumps(raw))
    assert (env.key, env.not_before, env.traceparent) == (None, None, None)
    fast = FAST.validate_json(json.dumps(raw))
    assert (fast.get("cqkey"), fast.get("cqnotbefore"), fast.get("traceparent")) == (None, None, None)
