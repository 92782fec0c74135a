"""Enqueueing: validated before anything is sent, serialized as the envelope."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ConfigDict

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.envelope import decode
from cloudqueue.testing import FakeClock, enqueued, enqueued_jobs

from .models import Receipt, Stamped


def test_a_bad_payload_names_the_job_and_the_field_and_sends_nothing(cq_app: cq.App,
                                                                      cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.PayloadError) as info:
        send_receipt.enqueue({"to": "a@b.c", "amount": -3})
    text = str(info.value)
    assert "job 'send_receipt'" in text
    assert "field 'order_id': Field required" in text
    assert "field 'amount'" in text and "greater than or equal to 0" in text
    assert "fix:" in text
    assert info.value.job == "send_receipt" and len(info.value.errors) == 2
    assert cq_backend.stats().waiting == 0


def test_enqueue_many_validates_every_item_before_sending_any(cq_app: cq.App,
                                                              cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.PayloadError, match=r"field 'order_id'"):
        send_receipt.enqueue_many([Receipt(to="a", order_id="1"), {"to": "b"}])
    assert cq_backend.stats().waiting == 0
    ids = send_receipt.enqueue_many([Receipt(to="a", order_id="1"), {"to": "b", "order_id": "2"},
                                     send_receipt.message(Receipt(to="c", order_id="3"),
                                                          idempotency_key="c3")])
    assert len(set(ids)) == 3
    assert [p["to"] for p in enqueued(cq_backend, "send_receipt")] == ["a", "b", "c"]


def test_enqueue_by_name_validates_a_dict(cq_app: cq.App, cq_backend: MemoryBackend,
                                          cq_clock: FakeClock) -> None:
    @cq_app.job
    def stamp(payload: Stamped) -> None: ...

    job_id = cq_app.enqueue("stamp", {"at": "2030-01-01T00:00:00Z"})
    [job] = enqueued_jobs(cq_backend)
    assert job.job_id == job_id and job.job_type == "stamp"
    assert job.payload == {"at": "2030-01-01T00:00:00Z"}
    assert job.due_at == cq_clock.now()
    with pytest.raises(cq.UnknownJobError, match="no job 'nope'"):
        cq_app.enqueue("nope", {})


def test_the_message_on_the_wire_is_the_envelope(cq_app: cq.App, cq_backend: MemoryBackend,
                                                 cq_clock: FakeClock) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    job_id = send_receipt.enqueue(Receipt(to="a", order_id="1"), idempotency_key="r-1")
    [msg] = cq_backend.pending()
    env = decode(msg.body)
    assert (env.id, env.type, env.source, env.key) == (job_id, "send_receipt", "cloudqueue://test", "r-1")
    assert env.data == {"to": "a", "order_id": "1", "amount": 1}
    assert env.enqueued_at == cq_clock.now()


def test_delay_and_at_set_the_due_time(cq_app: cq.App, cq_backend: MemoryBackend,
                                       cq_clock: FakeClock) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    send_receipt.enqueue(Receipt(to="a", order_id="1"), delay=timedelta(hours=3))
    send_receipt.enqueue(Receipt(to="b", order_id="2"), at=cq_clock.now() + timedelta(days=40))
    send_receipt.enqueue(Receipt(to="c", order_id="3"), at=cq_clock.now() - timedelta(days=1))
    due = [job.due_at - cq_clock.now() for job in enqueued_jobs(cq_backend)]
    assert due == [timedelta(hours=3), timedelta(days=40), timedelta(0)]


@pytest.mark.parametrize(("options", "message"), [
    ({"delay": timedelta(seconds=1), "at": datetime(2030, 1, 1, tzinfo=timezone.utc)}, "not both"),
    ({"at": datetime(2030, 1, 1)}, "aware datetime"),
    ({"delay": 5}, "timedelta"),
    ({"delay": timedelta(seconds=-1)}, "negative"),
    ({"idempotency_key": ""}, "non-empty"),
])
def test_bad_enqueue_options_are_refused(cq_app: cq.App, options: dict[str, object], message: str) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.ConfigurationError, match=message):
        send_receipt.enqueue(Receipt(to="a", order_id="1"), **options)  # type: ignore[arg-type]


def test_a_message_over_the_size_limit_raises_with_size_and_limit() -> None:
    app = cq.App("shop", backend=MemoryBackend(max_message_size=200))

    @app.job
    def send_receipt(payload: Receipt) -> None: ...

    with pytest.raises(cq.PayloadError, match=r"job 'send_receipt': the message is \d+ bytes, over .* 200"):
        send_receipt.enqueue(Receipt(to="x" * 300, order_id="1"))
    assert app.backend.stats().waiting == 0


def test_the_same_idempotency_key_gives_the_same_job_id(cq_app: cq.App, cq_backend: MemoryBackend,
                                                        cq_clock: FakeClock) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    first = send_receipt.enqueue(Receipt(to="a", order_id="1"), idempotency_key="k")
    assert send_receipt.enqueue(Receipt(to="a", order_id="1"), idempotency_key="k") == first
    assert len(cq_backend.pending()) == 1
    cq_clock.advance(cq_backend.dedup_window + timedelta(seconds=1))
    send_receipt.enqueue(Receipt(to="a", order_id="1"), idempotency_key="k")
    assert len(cq_backend.pending()) == 2  # outside the window it is a new send


def test_ordering_key_from_the_job_definition(cq_clock: FakeClock) -> None:
    backend = MemoryBackend(clock=cq_clock, fifo=True)
    app = cq.App("shop", backend=backend)

    @app.job(ordering_key=lambda p: p.to)
    def send_receipt(payload: Receipt) -> None: ...

    send_receipt.enqueue(Receipt(to="alice", order_id="1"))
    assert [m.ordering_key for m in backend.pending()] == ["alice"]


def test_backend_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDQUEUE_URL", "memory://from-env?visibility_timeout=9")
    app = cq.App("shop")
    backend = app.backend
    assert isinstance(backend, MemoryBackend)
    assert backend.name == "from-env" and backend.visibility_timeout == timedelta(seconds=9)
    monkeypatch.delenv("CLOUDQUEUE_URL")
    assert cq.App("shop").backend_url == "memory://"


# -- what a first-time user trips over ----------------------------------------------------

class Attachment(BaseModel):
    name: str
    blob: bytes


class Mail(BaseModel):
    to: str
    attachment: Attachment


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str


class Base64Mail(BaseModel):
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
    blob: bytes


def test_bytes_that_are_not_utf8_name_the_job_the_field_and_the_base64_fix(
        cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def send_mail(payload: Mail) -> None: ...

    with pytest.raises(cq.PayloadError) as info:
        send_mail.enqueue(Mail(to="a@b.c", attachment=Attachment(name="x.png", blob=b"\x89PNG\xff")))
    text = str(info.value)
    assert text.startswith("payload for job 'send_mail' cannot be serialized to JSON: "
                           "field 'attachment.blob': ")
    assert ('fix: bytes that are not UTF-8 text cannot travel in JSON as they are: set model_config = '
            'ConfigDict(ser_json_bytes="base64", val_json_bytes="base64") on Attachment') in text
    assert info.value.job == "send_mail"
    assert cq_backend.stats().waiting == 0


def test_the_base64_fix_carries_any_bytes_to_the_job(cq_app: cq.App) -> None:
    got: list[bytes] = []

    @cq_app.job
    def store(payload: Base64Mail) -> None:
        got.append(payload.blob)

    store.enqueue(Base64Mail(blob=b"\x89PNG\xff\x00"))
    assert cq_app.drain(fail_fast=True).succeeded == 1
    assert got == [b"\x89PNG\xff\x00"]


def test_enqueue_many_says_which_item_failed(cq_app: cq.App, cq_backend: MemoryBackend) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    items: list[object] = [{"to": f"u{n}", "order_id": str(n)} for n in range(5)]
    items[3] = {"to": "u3"}
    with pytest.raises(cq.PayloadError) as info:
        send_receipt.enqueue_many(items)
    assert str(info.value).startswith("enqueue_many item 3 (counting from 0): invalid payload for job "
                                      "'send_receipt'")
    assert "field 'order_id': Field required" in str(info.value)
    assert info.value.index == 3 and info.value.job == "send_receipt" and len(info.value.errors) == 1
    assert cq_backend.stats().waiting == 0


def test_extra_payload_fields_are_dropped_with_one_warning_naming_them_and_the_switch(
        cq_app: cq.App, cq_backend: MemoryBackend, caplog: pytest.LogCaptureFixture) -> None:
    @cq_app.job
    def send_receipt(payload: Receipt) -> None: ...

    with caplog.at_level(logging.WARNING, logger="cloudqueue"):
        send_receipt.enqueue({"to": "a", "order_id": "1", "ammount": 5})
        send_receipt.enqueue_many([{"to": "b", "order_id": str(n), "ammount": 5} for n in range(3)])
    [record] = caplog.records
    assert record.getMessage() == (
        "job 'send_receipt': payload field(s) 'ammount' are not in model Receipt and are dropped; "
        'to refuse them instead, set model_config = ConfigDict(extra="forbid") on the model')
    assert [p["amount"] for p in enqueued(cq_backend, "send_receipt")] == [1, 1, 1, 1]


def test_a_model_that_forbids_extra_fields_refuses_them_with_a_payload_error(
        cq_app: cq.App, cq_backend: MemoryBackend, caplog: pytest.LogCaptureFixture) -> None:
    @cq_app.job
    def notify(payload: Strict) -> None: ...

    with caplog.at_level(logging.WARNING, logger="cloudqueue"), pytest.raises(cq.PayloadError) as info:
        notify.enqueue({"to": "a", "ammount": 5})
    assert "field 'ammount': Extra inputs are not permitted" in str(info.value)
    assert caplog.records == [] and cq_backend.stats().waiting == 0
