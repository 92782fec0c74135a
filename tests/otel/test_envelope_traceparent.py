"""``envelope.with_traceparent`` sets the attribute without parsing the body, and both
envelope parsers read exactly the envelope ``encode`` would have written with it."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import core_schema as cs

from cloudqueue import envelope

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
W3C = st.from_regex(r"\A00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\Z")
#: payloads that try to look like the attribute: nested "traceparent" keys, quotes, braces
TRICKY = st.sampled_from(["traceparent", '"traceparent":"', ',"traceparent":', '"}', "}", "\\", 'x"}'])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text() | TRICKY,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5) | TRICKY, inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, derandomize=IN_CI, database=None)
@given(data=JSON, old=st.none() | W3C | st.text(), new=W3C | st.text(), key=st.none() | st.text(),
       not_before=st.booleans())
def test_both_parsers_read_the_new_traceparent_and_everything_else_unchanged(
        data: Any, old: str | None, new: str, key: str | None, not_before: bool) -> None:
    fields: dict[str, Any] = {"job_id": "j1", "app": "shop", "job_type": "ship", "time": NOW, "data": data,
                              "key": key, "not_before": NOW if not_before else None}
    body = envelope.with_traceparent(envelope.encode(**fields, traceparent=old), new)
    assert body == envelope.encode(**fields, traceparent=new)  # what encode writes, byte for byte
    slow = envelope.decode(body)
    fast = envelope.envelope_validator({"ship": cs.any_schema()}).validate_json(body)
    assert slow.traceparent == fast["traceparent"] == new
    assert slow.data == fast["data"] == data


@given(data=JSON, new=W3C)
@settings(max_examples=100, deadline=None, derandomize=IN_CI, database=None)
def test_a_body_written_otherwise_gets_the_attribute_appended_and_the_new_value_wins(data: Any, new: str) -> None:
    import json

    written = {"specversion": "1.0", "id": "j1", "source": "cloudqueue://shop", "type": "ship",
               "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "time": "2030-01-01T00:00:00Z",
               "data": data, "cqv": 1}
    body = envelope.with_traceparent(json.dumps(written, indent=1).encode() + b"\n", new)
    slow = envelope.decode(body)
    fast = envelope.envelope_validator({"ship": cs.any_schema()}).validate_json(body)
    assert slow.traceparent == fast["traceparent"] == new
    assert slow.data == fast["data"] == data


def test_a_body_that_is_not_an_object_comes_back_unchanged() -> None:
    for body in (b"not json", b"[1, 2]", b"", b"}"):
        assert envelope.with_traceparent(body, "00-" + "1" * 32 + "-" + "2" * 16 + "-01") == body
