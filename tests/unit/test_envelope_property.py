"""Poison is poison on every path: the fast and the slow envelope parsers agree (DESIGN.md 4b).

Hypothesis writes envelopes the way ``encode`` does, then breaks them: attributes dropped,
retyped or replaced, times that do not exist, duplicate keys, extra keys, unicode, lone
surrogates, bytes that are not JSON, payloads that fail their model. For every body the
one-pass validator (the hot path) and ``decode`` plus the payload's model (the path that
explains a refusal) must reach the same verdict and, on acceptance, the same fields.
The last test sends such bodies through an app on the memory backend: ``drain`` never
raises, and every refused body lands in dead letters with a reason.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

import cloudqueue as cq
from cloudqueue import envelope
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.envelope import Envelope, EnvelopeError
from cloudqueue.testing import FakeClock

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: modest and, in CI, the same examples on every run
PROPERTY = settings(max_examples=200, deadline=None, derandomize=IN_CI, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
THROUGH_APP = settings(max_examples=80, deadline=None, derandomize=IN_CI, database=None,
                       suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
UTC = timezone.utc


# -- the jobs: payload models a team would write ---------------------------------------
class Order(BaseModel):
    to: str
    order_id: str
    amount: int = Field(default=1, ge=0)
    note: str | None = None
    tags: list[str] = []
    at: datetime | None = None
    price: float = 0.0


class Line(BaseModel):
    sku: str
    qty: int


class Basket(BaseModel):
    lines: list[Line]
    counts: dict[str, int] = {}
    total: Decimal = Decimal(0)
    flags: tuple[bool, ...] = ()


PAYLOADS: dict[str, Any] = {"send_order": Order, "count": int, "basket": Basket}
ADAPTERS = {name: TypeAdapter(kind) for name, kind in PAYLOADS.items()}
FAST = envelope.envelope_validator({name: a.core_schema for name, a in ADAPTERS.items()})
SINGLE = {name: envelope.envelope_validator({name: a.core_schema}) for name, a in ADAPTERS.items()}


# -- JSON written by hand, so it can hold what json.dumps never writes ------------------
@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: NaN, 1.0 where 1 was meant, deep nesting, a bad number."""

    text: str


@dataclass
class Obj:
    """A JSON object as a list of pairs, so a key can appear twice."""

    pairs: list[tuple[str, Any]]


def dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Obj(list(value.items()))
    if isinstance(value, Obj):
        return "{" + ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in value.pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# -- strategies ---------------------------------------------------------------------------
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)
texts = st.text(max_size=12) | st.sampled_from(["", " ", "é", "日本", "\x00", "\u2028", "🙂"])
raw_tokens = st.sampled_from([Raw(t) for t in (
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E0", "1.0", "-0", "-0.0", "1" + "0" * 40,
    "0.1000000000000000055511151231257827", "2.5e-400", "[" * 199 + "]" * 199, "[" * 250 + "]" * 250)])
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
           | st.floats() | texts | raw_tokens | surrogates.map(lambda s: "x" + s))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=6)


@st.composite
def time_texts(draw: st.DrawFn) -> str:
    """Times that exist, written every way RFC 3339 allows, and near misses of every part."""
    kind = draw(st.integers(0, 3))
    if kind == 0:  # a real moment with a real offset
        moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
        offset = draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1))
        digits = draw(st.sampled_from([0, 1, 3, 6, 7, 9, 12]))
        text = (moment.date().isoformat() + draw(st.sampled_from("TTt "))
                + moment.time().isoformat(timespec="seconds"))
        if digits:
            text += "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999_999)):06d}"[:digits]
        if offset == 0 and draw(st.booleans()):
            return text + draw(st.sampled_from(["Z", "z", "+00:00", "-00:00"]))
        sign = "-" if offset < 0 else "+"
        return text + f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    if kind == 1:  # every field drawn past its range
        year = draw(st.integers(0, 10_000))
        parts = (f"{year:04d}", f"{draw(st.integers(0, 13)):02d}", f"{draw(st.integers(0, 32)):02d}")
        clock = (draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61)))
        sep = draw(st.sampled_from(["T", "t", " ", "_", "", "TT"]))
        frac = draw(st.sampled_from(["", "", ".", ".5", ".123456", ".1234567891", ",5"]))
        off = draw(st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+24:00", "-24:00", "+23:59",
                                    "-23:59", "+01:60", "+0100", "+01", "+01:00:30", "Z\n", " Z"]))
        return "-".join(parts) + sep + ":".join(f"{n:02d}" for n in clock) + frac + off
    if kind == 2:  # the calendar's edges
        return draw(st.sampled_from([
            "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "0001-01-01T23:00:00-01:00",
            "0001-01-02T00:30:00+01:00", "9999-12-31T23:59:59.999999999Z", "9999-12-31T00:30:00-01:00",
            "9999-12-30T23:30:00-01:00", "0000-01-01T00:00:00Z", "2030-13-45T00:00:00Z",
            "2028-02-29T00:00:00Z", "2030-02-29T00:00:00Z", "2000-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z", "2030-04-31T00:00:00Z", "2030-06-30T23:59:60Z",
            "٢٠٣٠-01-02T03:04:05Z", "2030-01-02T03:04:05Z", "20300102T030405Z", "2030-W01-2T03:04:05Z",
            "2030-01-02T03:04Z", "2030-01-02", "2030-01-02T24:00:00Z", "2030-01-02T03:04:05.Z"]))
    return draw(texts)


@st.composite
def payloads(draw: st.DrawFn, job: str) -> Any:
    """Data that validates against ``job``'s model, mostly."""
    if job == "count":
        return draw(st.integers() | st.sampled_from([Raw("1.0"), Raw("1e3"), "7", True, 2.5]))
    if job == "basket":
        line = st.fixed_dictionaries({"sku": texts, "qty": st.integers(-5, 2**65)})
        return draw(st.fixed_dictionaries({"lines": st.lists(line, max_size=3)}, optional={
            "counts": st.dictionaries(texts, st.integers(), max_size=2),
            "total": st.decimals(allow_nan=False, places=3).map(lambda d: Raw(str(d))) | st.floats() | texts,
            "flags": st.lists(st.booleans(), max_size=3)}))
    return draw(st.fixed_dictionaries({"to": texts, "order_id": texts}, optional={
        "amount": st.integers(-1, 2**70), "note": st.none() | texts, "tags": st.lists(texts, max_size=2),
        "at": st.none() | time_texts(), "price": st.floats() | raw_tokens}))


@st.composite
def bodies(draw: st.DrawFn, as_bytes_only: bool = False) -> bytes | str:
    """An envelope as ``encode`` writes it, then up to four mutations, then maybe bad bytes."""
    job = draw(st.sampled_from(sorted(PAYLOADS)))
    data = draw(payloads(job))
    moments = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                           timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                      timezone(-timedelta(hours=8))]))
    written = envelope.encode(
        job_id=draw(st.text(min_size=1, max_size=10)), app=draw(st.text(max_size=6)), job_type=job,
        time=draw(moments), data_json=dump(data, True).encode(),
        key=draw(st.none() | texts), not_before=draw(st.none() | moments),
        traceparent=draw(st.none() | texts))
    pairs = list(json.loads(written).items())
    set_attr(pairs, "data", data)  # as drawn: json.loads would normalize its raw tokens
    for _ in range(draw(st.integers(0, 4))):
        mutate(draw, pairs)
    text = dump(Obj(pairs), ascii_only=draw(st.booleans()))
    body = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8
    damage = draw(st.sampled_from(["none"] * 12 + ["truncate", "bom", "utf16", "byte", "str", "list"]))
    if damage == "truncate":
        body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    elif damage == "bom":
        body = b"\xef\xbb\xbf" + body
    elif damage == "utf16":
        body = text.encode("utf-16", "surrogatepass")
    elif damage == "byte":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at:]
    elif damage == "list":
        body = b"[" + body + b"]"
    elif damage == "str" and not as_bytes_only and text.encode("utf-8", "surrogatepass") == body:
        return text
    return body


ATTRIBUTES = ["specversion", "id", "source", "type", "time", "datacontenttype", "data", "cqv",
              "cqkey", "cqnotbefore", "traceparent"]


def mutate(draw: st.DrawFn, pairs: list[tuple[str, Any]]) -> None:
    """One change to the envelope's attributes, in place."""
    how = draw(st.sampled_from(["drop", "retype", "time", "type", "cqv", "content", "data", "extra",
                                "duplicate", "null", "specversion", "text"]))
    keys = [k for k, _ in pairs]
    name = draw(st.sampled_from(ATTRIBUTES))
    values: dict[str, Callable[[], Any]] = {
        "retype": lambda: draw(json_values),
        "time": lambda: draw(time_texts()),
        "type": lambda: draw(st.sampled_from([*PAYLOADS, "", "unknown", "Count", 7, None, True])),
        "cqv": lambda: draw(st.sampled_from([1, True, False, 1.0, "1", 2, 0, -1, None, 10**30, Raw("1e0"),
                                             Raw("1.0"), Raw("-0"), Raw("1" + "0" * 30)])),
        "content": lambda: draw(st.sampled_from([
            "application/json", "application/json; charset=utf-8", "Application/JSON", "text/plain",
            "", None, 5, "application/cloudevents+json", " application/json", "application/json;",
            'application/json ;\tcharset="utf-8"', "application/json\n", "application/\u212aSON",
            "application/json; a=\u017f", 'application/json; q="a\\"b"', "application/json; q=\"a"])),
        "data": lambda: draw(json_values | payloads(draw(st.sampled_from(sorted(PAYLOADS))))),
        "specversion": lambda: draw(st.sampled_from(["1.0", "1", 1.0, Raw("1.0"), "0.3", None, "1.0 "])),
        "text": lambda: draw(texts | surrogates),
    }
    target = {"time": draw(st.sampled_from(["time", "cqnotbefore"])), "type": "type", "cqv": "cqv",
              "content": "datacontenttype", "data": "data", "specversion": "specversion"}.get(how, name)
    if how == "drop":
        if name in keys:
            del pairs[keys.index(name)]
    elif how == "extra":
        pairs.insert(draw(st.integers(0, len(pairs))), (draw(texts), draw(json_values)))
    elif how == "null":
        set_attr(pairs, draw(st.sampled_from(["datacontenttype", "cqkey", "cqnotbefore", "traceparent",
                                              "data", "id"])), None)
    elif how == "duplicate":
        value = values[draw(st.sampled_from(sorted(values)))]()
        pairs.insert(draw(st.integers(0, len(pairs))), (name, value))
    else:
        set_attr(pairs, target, values[how if how in values else "retype"]())


def set_attr(pairs: list[tuple[str, Any]], name: str, value: Any) -> None:
    for i, (key, _) in enumerate(pairs):
        if key == name:
            pairs[i] = (name, value)
            return
    pairs.append((name, value))


# -- the two paths ------------------------------------------------------------------------
@dataclass
class Verdict:
    """What a parser made of a body: refused, or the fields the dispatcher reads."""

    accepted: bool
    fields: tuple[Any, ...] = ()


def plain(payload: Any) -> Any:
    """A payload as comparable data: a NaN equals itself, Decimal('0') equals Decimal('0.0').

    (pydantic reads a JSON number for a Decimal field through a float in both modes, but
    keeps the exponent only in Python mode; the value is the same.)
    """
    if isinstance(payload, BaseModel):
        payload = payload.model_dump()
    if isinstance(payload, float) and math.isnan(payload):
        return "NaN"
    if isinstance(payload, dict):
        return {key: plain(value) for key, value in payload.items()}
    if isinstance(payload, (list, tuple)):
        return type(payload)(plain(value) for value in payload)
    return payload


def fields(env: Envelope, payload: Any) -> tuple[Any, ...]:
    # the times also as the dispatcher and JobContext parse them later
    return (env.id, env.type, env.time, env.key, env.not_before, env.traceparent, plain(payload),
            env.enqueued_at, env.not_before_at)


def fast_path(validator: SchemaValidator, body: bytes | str) -> Verdict:
    try:
        out = validator.validate_json(body)
    except ValidationError:
        return Verdict(False)
    env = Envelope(id=out["id"], source=out["source"], type=out["type"], time=out["time"], data=None,
                   key=out.get("cqkey"), not_before=out.get("cqnotbefore"),
                   traceparent=out.get("traceparent"))
    return Verdict(True, fields(env, out["data"]))


def slow_path(jobs: set[str], body: bytes | str) -> tuple[Verdict, Envelope | None]:
    try:
        env = envelope.decode(body)
    except EnvelopeError as exc:  # anything else escaping decode is a bug
        assert str(exc)
        return Verdict(False), None
    if env.type not in jobs:
        return Verdict(False), env
    try:
        payload = ADAPTERS[env.type].validate_python(env.data)
    except ValidationError:
        return Verdict(False), env
    return Verdict(True, fields(env, payload)), env


@PROPERTY
@given(body=bodies())
def test_fast_and_slow_parsers_agree_on_every_body(body: bytes | str) -> None:
    slow, _ = slow_path(set(PAYLOADS), body)
    assert fast_path(FAST, body) == slow


@PROPERTY
@given(body=bodies(), job=st.sampled_from(sorted(PAYLOADS)))
def test_they_agree_for_an_app_with_a_single_job_too(body: bytes | str, job: str) -> None:
    slow, _ = slow_path({job}, body)
    assert fast_path(SINGLE[job], body) == slow


valid_payloads: dict[str, st.SearchStrategy[Any]] = {
    "count": st.integers(),
    "send_order": st.builds(
        Order, to=texts, order_id=texts, amount=st.integers(0, 2**70), note=st.none() | texts,
        tags=st.lists(texts, max_size=2), at=st.none() | st.datetimes(timezones=st.just(UTC)),
        price=st.floats(allow_nan=False, allow_infinity=False)),
    "basket": st.builds(
        Basket, lines=st.lists(st.builds(Line, sku=texts, qty=st.integers()), max_size=2),
        counts=st.dictionaries(texts, st.integers(), max_size=2),
        total=st.decimals(min_value=-10**9, max_value=10**9, places=3),
        flags=st.lists(st.booleans(), max_size=2).map(tuple)),
}


@PROPERTY
@given(job=st.sampled_from(sorted(PAYLOADS)), job_id=st.text(min_size=1, max_size=10),
       app=st.text(max_size=6), time=st.datetimes(timezones=st.just(UTC)), key=st.none() | texts,
       not_before=st.none() | st.datetimes(timezones=st.just(UTC)), traceparent=st.none() | texts,
       data=st.data())
def test_what_encode_writes_both_accept_with_the_fields_it_was_given(
        job: str, job_id: str, app: str, time: datetime, key: str | None, not_before: datetime | None,
        traceparent: str | None, data: st.DataObject) -> None:
    payload = data.draw(valid_payloads[job])
    body = envelope.encode(job_id=job_id, app=app, job_type=job, time=time, key=key,
                           data_json=ADAPTERS[job].dump_json(payload), not_before=not_before,
                           traceparent=traceparent)
    fast = fast_path(FAST, body)
    assert fast == slow_path(set(PAYLOADS), body)[0]
    assert fast.fields == (job_id, job, rfc3339(time), key, None if not_before is None else rfc3339(not_before),
                           traceparent, plain(payload), time, not_before)


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- through the public API ---------------------------------------------------------------
def new_app() -> tuple[cq.App, list[tuple[str, Any, datetime]]]:
    clock = FakeClock(NOW)
    app = cq.App("t", backend=MemoryBackend(clock=clock), clock=clock)
    ran: list[tuple[str, Any, datetime]] = []

    @app.job(name="send_order")
    def send_order(payload: Order, ctx: cq.JobContext) -> None:
        ran.append((ctx.job_id, plain(payload), ctx.enqueued_at))  # parses the time here

    @app.job(name="count")
    def count(payload: int, ctx: cq.JobContext) -> None:
        ran.append((ctx.job_id, plain(payload), ctx.enqueued_at))  # parses the time here

    @app.job(name="basket")
    def basket(payload: Basket, ctx: cq.JobContext) -> None:
        ran.append((ctx.job_id, plain(payload), ctx.enqueued_at))  # parses the time here

    return app, ran


@THROUGH_APP
@given(batch=st.lists(bodies(as_bytes_only=True), min_size=1, max_size=4))
def test_drain_never_raises_and_every_refused_body_is_dead_lettered_with_a_reason(
        batch: list[bytes]) -> None:
    app, ran = new_app()
    try:
        app.backend.send([cq.OutgoingMessage(body=body, job_id=f"m{n}", job_type="send_order")
                          for n, body in enumerate(batch)])
        app.drain()
        at_once: Counter[bytes] = Counter()
        expected_runs: list[tuple[str, Any, datetime]] = []
        for body in batch:
            verdict, env = slow_path(set(PAYLOADS), body)
            due = env is None or env.not_before_at is None or env.not_before_at <= NOW
            if not verdict.accepted:  # poison goes at once, due or not
                at_once[body] += 1
            elif due:
                assert env is not None
                expected_runs.append((env.id, verdict.fields[6], env.enqueued_at))
        letters = app.backend.dead_letters(limit=len(batch) + 1)
        got = Counter(letter.body for letter in letters)
        assert got == at_once
        for letter in letters:
            assert str(letter.reason).strip(), letter
        assert len(ran) == len(expected_runs)
        for run in ran:  # the same runs, in any order (payloads are dicts: no Counter)
            expected_runs.remove(run)
    finally:
        app.close()


@pytest.mark.parametrize("name", ["time", "cqnotbefore"])
def test_a_date_that_does_not_exist_is_dead_lettered_not_a_crash(name: str) -> None:
    app, ran = new_app()
    try:
        raw = json.loads(envelope.encode(job_id="j1", app="t", job_type="count", time=NOW, data=1))
        raw[name] = "2030-13-45T00:00:00Z"
        app.backend.send([cq.OutgoingMessage(body=json.dumps(raw).encode(), job_id="j1", job_type="count")])
        app.drain()
        [letter] = app.backend.dead_letters()
        assert name in str(letter.reason) and "2030-13-45" in str(letter.reason)
        assert ran == []
    finally:
        app.close()


def test_a_poison_payload_with_a_later_cqnotbefore_is_dead_lettered_at_once() -> None:
    app, ran = new_app()
    try:
        body = envelope.encode(job_id="j1", app="t", job_type="count", time=NOW, data="not a number",
                               not_before=NOW + timedelta(days=1))
        app.backend.send([cq.OutgoingMessage(body=body, job_id="j1", job_type="count")])
        app.drain()
        assert [letter.body for letter in app.backend.dead_letters()] == [body]
        assert ran == []
    finally:
        app.close()
