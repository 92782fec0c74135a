"""The wire format: CloudEvents 1.0 JSON, versioned, parsed strictly."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

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
    (_body(cqv=2), "newer than this cloudqueue"),
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
