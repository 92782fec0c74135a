"""How every backend behaves: one body, run against each harness."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import OutgoingMessage
from cloudqueue.envelope import decode
from cloudqueue.store import Status
from tests.store.stores import store_url

from .harness import Harness

pytestmark = pytest.mark.conformance


class Order(BaseModel):
    order_id: str
    amount: int = 1


def _retry(harness: Harness, attempts: int, step: int = 1) -> cq.Retry:
    return cq.Retry(attempts=attempts, backoff=cq.Backoff.fixed(harness.time_unit * step))


def test_enqueued_job_runs_once_and_is_acknowledged(harness: Harness) -> None:
    app = harness.app()
    seen: list[tuple[str, int, str]] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        seen.append((payload.order_id, ctx.attempt, ctx.job_id))

    job_id = charge.enqueue(Order(order_id="o-1"))
    harness.run_due(app)
    harness.run_due(app)
    assert seen == [("o-1", 1, job_id)]
    stats = app.backend.stats()
    assert stats.waiting in (0, None) and stats.in_flight in (0, None)
    assert harness.dead_letters() == []


def test_async_job_runs(harness: Harness) -> None:
    app = harness.app()
    seen: list[str] = []

    @app.job
    async def charge(payload: Order) -> None:
        seen.append(payload.order_id)

    charge.enqueue({"order_id": "o-async"})
    harness.run_due(app)
    assert seen == ["o-async"]


def test_attempts_come_from_the_queue_and_follow_the_backoff(harness: Harness) -> None:
    app = harness.app()
    attempts: list[int] = []

    @app.job(retry=_retry(harness, attempts=3, step=2))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        assert ctx.max_attempts == 3
        if ctx.attempt < 3:
            raise RuntimeError(f"failure {ctx.attempt}")

    flaky.enqueue(Order(order_id="o-2"))
    harness.run_due(app)
    assert attempts == [1]
    harness.advance(harness.time_unit)  # half the backoff: not due yet
    harness.run_due(app)
    assert attempts == [1]
    harness.advance(harness.time_unit * 1.5)
    harness.run_due(app)
    assert attempts == [1, 2]
    harness.advance(harness.time_unit * 2.5)
    harness.run_due(app)
    assert attempts == [1, 2, 3]
    assert harness.dead_letters() == []


def test_exhausted_attempts_go_to_dead_letters_with_the_original_message(harness: Harness) -> None:
    app = harness.app()

    @app.job(retry=_retry(harness, attempts=2))
    def always_fails(payload: Order) -> None:
        raise ValueError("card declined")

    job_id = always_fails.enqueue(Order(order_id="o-3", amount=7))
    harness.run_due(app)
    harness.advance(harness.time_unit * 1.5)
    harness.run_due(app)
    [letter] = harness.dead_letters()
    assert "exhausted" in letter.reason and "card declined" in letter.reason
    env = decode(letter.body)
    assert (env.id, env.type, env.data) == (job_id, "always_fails", {"order_id": "o-3", "amount": 7})


def test_permanent_goes_to_dead_letters_at_once(harness: Harness) -> None:
    app = harness.app()
    runs: list[int] = []

    @app.job(retry=_retry(harness, attempts=5))
    def refuse(payload: Order, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)
        raise cq.Permanent("order was cancelled")

    refuse.enqueue(Order(order_id="o-4"))
    harness.run_due(app)
    harness.advance(harness.time_unit * 2)
    harness.run_due(app)
    assert runs == [1]
    [letter] = harness.dead_letters()
    assert letter.reason.startswith("permanent:") and "order was cancelled" in letter.reason


def test_retry_later_waits_the_delay_it_names(harness: Harness) -> None:
    app = harness.app()
    attempts: list[int] = []

    @app.job(retry=_retry(harness, attempts=3))
    def rate_limited(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise cq.RetryLater(harness.time_unit * 3)

    rate_limited.enqueue(Order(order_id="o-5"))
    harness.run_due(app)
    harness.advance(harness.time_unit * 1.5)
    harness.run_due(app)
    assert attempts == [1]
    harness.advance(harness.time_unit * 2)
    harness.run_due(app)
    assert attempts == [1, 2]


def test_poison_messages_go_to_dead_letters_at_once_and_the_rest_carries_on(harness: Harness) -> None:
    app = harness.app()
    done: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        done.append(payload.order_id)

    good = charge.message(Order(order_id="good"))
    unknown = OutgoingMessage(
        body=good.body.replace(b'"type":"charge"', b'"type":"refund"'), job_id="u", job_type="refund")
    bad_payload = OutgoingMessage(
        body=good.body.replace(b'"amount":1', b'"amount":"lots"'), job_id="b", job_type="charge")
    garbage = OutgoingMessage(body=b"\x00not json at all", job_id="g", job_type="?")
    app.backend.send([garbage, unknown, good, bad_payload])
    harness.run_due(app)
    assert done == ["good"]
    reasons = sorted(letter.reason for letter in harness.dead_letters())
    assert len(reasons) == 3
    assert all(reason.startswith("poison:") for reason in reasons)
    assert any("not a cloudqueue envelope" in r for r in reasons)
    assert any("unknown job type 'refund'" in r for r in reasons)
    assert any("'amount'" in r and "charge" in r for r in reasons)


def test_delay_holds_the_job_back_until_due(harness: Harness) -> None:
    app = harness.app()
    done: list[str] = []

    @app.job
    def remind(payload: Order) -> None:
        done.append(payload.order_id)

    remind.enqueue(Order(order_id="later"), delay=harness.time_unit * 3)
    remind.enqueue(Order(order_id="now"))
    harness.run_due(app)
    assert done == ["now"]
    harness.advance(harness.time_unit * 3.5)
    harness.run_due(app)
    assert done == ["now", "later"]


def test_idempotency_key_drops_the_duplicate(harness: Harness) -> None:
    app = harness.app()
    done: list[str] = []

    @app.job
    def receipt(payload: Order) -> None:
        done.append(payload.order_id)

    first = receipt.enqueue(Order(order_id="o-6"), idempotency_key="receipt-o-6")
    second = receipt.enqueue(Order(order_id="o-6"), idempotency_key="receipt-o-6")
    assert first == second
    harness.run_due(app)
    assert done == ["o-6"]


def test_idempotency_key_runs_once_with_a_store(harness: Harness, request: pytest.FixtureRequest) -> None:
    """With a store, a key runs once on every backend, whatever reaches the queue: a second
    enqueue, and a copy sent by another producer (no enqueue-side dedup between them)."""
    app = harness.app(store=store_url(harness.store_kind, request))
    done: list[str] = []

    @app.job
    def receipt(payload: Order) -> None:
        done.append(payload.order_id)

    first = receipt.enqueue(Order(order_id="o-6"), idempotency_key="receipt-o-6")
    second = receipt.enqueue(Order(order_id="o-6"), idempotency_key="receipt-o-6")
    assert first == second
    copy = app._build(receipt, Order(order_id="o-6"), idempotency_key="receipt-o-6")
    app.backend.send([OutgoingMessage(body=copy.body, job_id=f"copy-{first[:8]}", job_type="receipt")])
    harness.run_due(app)
    harness.run_due(app)
    assert done == ["o-6"]
    record = app.store_record(idempotency_key="receipt-o-6")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1
    assert harness.dead_letters() == []


def test_once_runs_a_job_once_per_job_id_with_a_store(harness: Harness, request: pytest.FixtureRequest) -> None:
    app = harness.app(store=store_url(harness.store_kind, request))
    done: list[str] = []

    @app.job(once=cq.Once(keep_result=True))
    def invoice(payload: Order) -> dict[str, str]:
        done.append(payload.order_id)
        return {"invoice": f"inv-{payload.order_id}"}

    job_id = invoice.enqueue(Order(order_id="o-9"))
    other = app._build(invoice, Order(order_id="o-9")).body  # the same job, as redelivered: same id
    body = other.replace(decode(other).id.encode(), job_id.encode())
    app.backend.send([OutgoingMessage(body=body, job_id=f"copy-{job_id[:8]}", job_type="invoice")])
    harness.run_due(app)
    harness.run_due(app)
    assert done == ["o-9"]
    record = app.store_record(job_id=job_id)
    assert record is not None and record.result == {"invoice": "inv-o-9"}


def test_redrive_puts_dead_letters_back_intact(harness: Harness) -> None:
    app = harness.app()
    fail = [True]
    done: list[str] = []

    @app.job(retry=_retry(harness, attempts=1))
    def ship(payload: Order) -> None:
        if fail[0]:
            raise RuntimeError("carrier down")
        done.append(payload.order_id)

    job_id = ship.enqueue(Order(order_id="o-7"))
    harness.run_due(app)
    [letter] = harness.dead_letters()
    fail[0] = False
    assert app.backend.redrive() == 1
    harness.run_due(app)
    assert done == ["o-7"]
    assert harness.dead_letters() == []
    assert decode(letter.body).id == job_id


def test_purge_empties_dead_letters(harness: Harness) -> None:
    app = harness.app()

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    harness.run_due(app)
    assert len(harness.dead_letters()) == 3
    purged = app.backend.purge_dead_letters()
    assert purged in (3, -1)
    assert harness.dead_letters() == []


def test_stats_count_waiting_delayed_and_dead_letters(harness: Harness) -> None:
    app = harness.app()

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue_many([Order(order_id="a"), Order(order_id="b")])
    refuse.enqueue(Order(order_id="c"), delay=harness.time_unit * 30)
    stats = app.backend.stats()
    if stats.waiting is not None:
        assert stats.waiting == 2
    if stats.delayed is not None:
        assert stats.delayed == 1
    harness.run_due(app)
    stats = app.backend.stats()
    if stats.dead_lettered is not None:
        assert stats.dead_lettered == 2
    if stats.waiting is not None:
        assert stats.waiting == 0


def test_nothing_is_lost_when_a_consumer_dies_before_acking(harness: Harness) -> None:
    app = harness.app()
    attempts: list[int] = []

    @app.job
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)

    charge.enqueue(Order(order_id="o-8"))
    taken = harness.receive_unsettled(app)
    assert len(taken) == 1  # the consumer took it, then died
    harness.run_due(app)
    assert attempts == []  # still hidden
    harness.advance(harness.visibility_timeout + harness.time_unit)
    harness.run_due(app)
    assert attempts == [2]


def test_fifo_keeps_order_within_a_group(harness: Harness) -> None:
    if not harness.backend.capabilities.fifo:
        pytest.skip(f"{harness.name} is not a FIFO queue")
    app = harness.app()
    seen: list[str] = []
    fail_once = {"b-2"}

    @app.job(retry=_retry(harness, attempts=3))
    def step(payload: Order) -> None:
        if payload.order_id in fail_once:
            fail_once.discard(payload.order_id)
            raise RuntimeError("transient")
        seen.append(payload.order_id)

    for group, ids in (("a", ["a-1", "a-2", "a-3"]), ("b", ["b-1", "b-2", "b-3"])):
        for order_id in ids:
            step.enqueue(Order(order_id=order_id), ordering_key=group)
    for _ in range(4):
        harness.run_due(app)
        harness.advance(harness.time_unit * 1.5)
    assert [x for x in seen if x.startswith("a")] == ["a-1", "a-2", "a-3"]
    assert [x for x in seen if x.startswith("b")] == ["b-1", "b-2", "b-3"]


def test_ordering_key_on_a_queue_without_order_is_refused(harness: Harness) -> None:
    if harness.backend.capabilities.fifo:
        pytest.skip(f"{harness.name} keeps order")
    app = harness.app()

    @app.job
    def step(payload: Order) -> None: ...

    with pytest.raises(cq.UnsupportedFeature, match="ordering_key"):
        step.enqueue(Order(order_id="x"), ordering_key="g")
