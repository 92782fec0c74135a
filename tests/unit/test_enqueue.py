"""Enqueueing: validated before anything is sent, serialized as the envelope."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

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
