"""The idempotency store on the memory backend: what runs, what is skipped, what waits."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import OutgoingMessage
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.store import MemoryStore, Status
from cloudqueue.testing import FakeClock


class Order(BaseModel):
    order_id: str


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_a_keyed_job_runs_once_however_often_it_is_delivered(backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    runs: list[str] = []

    @app.job
    def receipt(payload: Order) -> None:
        runs.append(payload.order_id)

    body = app._build(receipt, Order(order_id="o-1"), idempotency_key="receipt-o-1").body
    for n in range(3):  # three producers, no enqueue-side dedup between them
        backend.send([OutgoingMessage(body=body, job_id=f"copy-{n}", job_type="receipt")])
    report = app.drain()
    assert runs == ["o-1"]
    assert (report.succeeded, report.skipped) == (1, 2)
    skipped = [r for r in report.results if r.outcome is cq.Outcome.SKIP]
    assert all("duplicate of completed job receipt" in r.reason.text for r in skipped)  # type: ignore[union-attr]
    record = app.store_record(idempotency_key="receipt-o-1")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1


def test_without_a_store_the_copies_all_run(backend: MemoryBackend) -> None:
    app = cq.App("shop", backend=backend)
    runs: list[str] = []

    @app.job
    def receipt(payload: Order) -> None:
        runs.append(payload.order_id)

    body = app._build(receipt, Order(order_id="o-1"), idempotency_key="k").body
    for n in range(2):
        backend.send([OutgoingMessage(body=body, job_id=f"copy-{n}", job_type="receipt")])
    app.drain()
    assert runs == ["o-1", "o-1"]
    assert app.idempotency is None and app.store is None


def test_once_guards_jobs_without_a_key_by_their_job_id(backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    runs: list[str] = []

    @app.job(once=True)
    def ship(payload: Order) -> None:
        runs.append(payload.order_id)

    @app.job
    def note(payload: Order) -> None:
        runs.append("note " + payload.order_id)

    body = app._build(ship, Order(order_id="o-2")).body
    note_body = app._build(note, Order(order_id="o-2")).body
    for n in range(2):
        backend.send([OutgoingMessage(body=body, job_id=f"s-{n}", job_type="ship"),
                      OutgoingMessage(body=note_body, job_id=f"n-{n}", job_type="note")])
    app.drain()
    assert sorted(runs) == ["note o-2", "note o-2", "o-2"]  # unguarded jobs run every time
    assert len(store) == 1


def test_once_false_leaves_a_keyed_job_unguarded(backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    runs: list[str] = []

    @app.job(once=False)
    def ping(payload: Order) -> None:
        runs.append(payload.order_id)

    body = app._build(ping, Order(order_id="p"), idempotency_key="ping").body
    for n in range(2):
        backend.send([OutgoingMessage(body=body, job_id=f"p-{n}", job_type="ping")])
    app.drain()
    assert runs == ["p", "p"] and len(store) == 0


def test_a_duplicate_of_a_running_job_is_deferred_without_spending_an_attempt(
        clock: FakeClock, backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    runs: list[int] = []
    inner: list[cq.DrainReport] = []

    @app.job(retry=cq.Retry(attempts=1))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:  # while this one runs, its duplicate arrives and is consumed
            inner.append(app.drain(max_jobs=1))

    body = app._build(charge, Order(order_id="o-3"), idempotency_key="charge-o-3").body
    backend.send([OutgoingMessage(body=body, job_id="first", job_type="charge")])
    backend.send([OutgoingMessage(body=body, job_id="second", job_type="charge")])
    app.drain(max_jobs=1)
    [deferred] = inner[0].results
    assert deferred.outcome is cq.Outcome.DEFER
    assert "duplicate of job charge" in deferred.reason.text and "in progress" in deferred.reason.text  # type: ignore[union-attr]
    assert timedelta(seconds=1) <= deferred.delay <= timedelta(seconds=30)  # type: ignore[operator]
    clock.advance(timedelta(seconds=31))
    report = app.drain()
    # it came back, found the key completed, and was acked; one attempt of one was never spent
    assert [r.outcome for r in report.results] == [cq.Outcome.SKIP]
    assert runs == [1] and backend.dead_letters() == []


def test_a_failure_releases_the_claim_and_attempts_count_runs(
        clock: FakeClock, backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=5))))
    def flaky(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise RuntimeError("carrier down")

    flaky.enqueue(Order(order_id="o-4"), idempotency_key="flaky-o-4")
    app.drain(follow_delays=True)
    assert attempts == [1, 2, 3]
    record = app.store_record(idempotency_key="flaky-o-4")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 3


def test_dead_lettering_forgets_the_key_so_a_redrive_runs_it_afresh(
        backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    fail = [True]
    attempts: list[int] = []

    @app.job(retry=cq.Retry(attempts=1))
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        if fail[0]:
            raise RuntimeError("no carrier")

    ship.enqueue(Order(order_id="o-5"), idempotency_key="ship-o-5")
    app.drain()
    assert app.store_record(idempotency_key="ship-o-5") is None
    fail[0] = False
    assert backend.redrive() == 1
    app.drain()
    assert attempts == [1, 1]


def test_a_crashed_runs_claim_lapses_with_its_lease(clock: FakeClock, backend: MemoryBackend,
                                                     store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    attempts: list[int] = []

    @app.job
    def pack(payload: Order, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)

    pack.enqueue(Order(order_id="o-6"), idempotency_key="pack-o-6")
    [delivery] = backend.receive()
    task = app.dispatcher.prepare(delivery)
    assert isinstance(task, cq.Task)
    now = clock.now()  # a consumer claimed it, then died before running it
    store.claim(app.idempotency.key(task), token="dead", now=now,  # type: ignore[union-attr]
                lease_until=now + timedelta(seconds=30), expires_at=now + timedelta(hours=1))
    clock.advance(timedelta(seconds=31))  # the message and the claim come back together
    app.drain()
    assert attempts == [2]  # the crashed run counts: it held the claim


def test_keep_result_stores_the_return_value_and_ttl_ends_the_window(
        clock: FakeClock, backend: MemoryBackend, store: MemoryStore) -> None:
    app = cq.App("shop", backend=backend, store=store)
    runs: list[str] = []

    @app.job(once=cq.Once(ttl=timedelta(minutes=10), keep_result=True))
    def quote(payload: Order) -> dict[str, object]:
        runs.append(payload.order_id)
        return {"order_id": payload.order_id, "total": 12.5}

    quote.enqueue(Order(order_id="o-7"), idempotency_key="quote-o-7")
    app.drain()
    record = app.store_record(idempotency_key="quote-o-7")
    assert record is not None and record.result == {"order_id": "o-7", "total": 12.5}
    clock.advance(timedelta(minutes=11))
    assert app.store_record(idempotency_key="quote-o-7") is None
    body = app._build(quote, Order(order_id="o-7"), idempotency_key="quote-o-7").body
    backend.send([OutgoingMessage(body=body, job_id="later", job_type="quote")])
    app.drain()
    assert runs == ["o-7", "o-7"]  # past the TTL, the key may run again


def test_a_return_value_that_is_not_json_completes_without_it(backend: MemoryBackend, store: MemoryStore,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    app = cq.App("shop", backend=backend, store=store)

    @app.job(once=cq.Once(keep_result=True))
    def odd(payload: Order) -> object:
        return object()

    odd.enqueue(Order(order_id="o-8"))
    report = app.drain()
    assert report.succeeded == 1
    [record] = [r for r in store._records.values()]
    assert record.status is Status.COMPLETED and record.value is None
    assert "not JSON-serializable" in caplog.text


def test_the_worker_heartbeat_keeps_a_long_jobs_claim(store: MemoryStore) -> None:
    backend = MemoryBackend(visibility_timeout=timedelta(seconds=1))
    app = cq.App("shop", backend=backend, store=store)
    started, finish = threading.Event(), threading.Event()
    leases: list[object] = []

    @app.job(once=True)
    def slow(payload: Order) -> None:
        started.set()
        finish.wait(10)

    slow.enqueue(Order(order_id="o-9"))
    worker = app.worker(concurrency=1, poll_wait=timedelta(seconds=0.05), handle_signals=False)
    thread = threading.Thread(target=worker.run, kwargs={"until_empty": True})
    thread.start()
    try:
        assert started.wait(10)
        [key] = list(store._records)
        first = store._records[key].lease_until
        # the job runs past its 1 s window: the heartbeat moves the lease on with the message
        for _ in range(100):
            leases.append(store._records[key].lease_until)
            if leases[-1] != first:
                break
            threading.Event().wait(0.05)
        assert leases[-1] != first
        assert store._records[key].status is Status.IN_PROGRESS
    finally:
        finish.set()
        thread.join(20)
    assert worker.stats.succeeded == 1


def test_bad_configuration_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudqueue import store as store_module

    app = cq.App("shop")
    with pytest.raises(cq.ConfigurationError, match=r"job 'ship': once= needs a store.*store='memory://'"):
        @app.job(once=True)
        def ship(payload: Order) -> None: ...
    with pytest.raises(cq.ConfigurationError, match="store must be a URL string"):
        cq.App("shop", store=42)  # type: ignore[arg-type]
    with pytest.raises(cq.ConfigurationError, match="did you mean 'memory'"):
        cq.App("shop", store="memroy://").store  # noqa: B018
    monkeypatch.setattr(store_module, "_entry_points", dict)  # as on an install without adapters
    with pytest.raises(cq.ConfigurationError, match=r'pip install "cloudqueue\[aws\]"'):
        store_module.from_url("dynamodb://t")
    with pytest.raises(cq.ConfigurationError, match="positive"):
        cq.Once(ttl=timedelta(0))
    with pytest.raises(cq.ConfigurationError, match="has no store"):
        app.store_record(job_id="x")


def test_a_store_that_fails_fails_the_attempt_and_loses_nothing(backend: MemoryBackend) -> None:
    class Down(MemoryStore):
        def claim(self, *args: object, **kwargs: object) -> cq.store.Claim:  # type: ignore[name-defined, override]
            raise ConnectionError("table unreachable")

    app = cq.App("shop", backend=backend, store=Down())

    @app.job(retry=cq.Retry(attempts=1))
    def pay(payload: Order) -> None:
        raise AssertionError("must not run without a claim")

    pay.enqueue(Order(order_id="o-10"), idempotency_key="pay-o-10")
    app.drain()
    [letter] = backend.dead_letters()
    assert "a middleware failed before the job ran: ConnectionError: table unreachable" in letter.reason


def test_no_store_adds_no_run_hook() -> None:
    app = cq.App("shop")
    assert app.dispatcher._run_hooks == ()
    stored = cq.App("shop", store="memory://")
    assert len(stored.dispatcher._run_hooks) == 1


def test_named_memory_stores_are_shared_in_the_process() -> None:
    from cloudqueue.store import from_url

    assert from_url("memory://orders") is from_url("memory://orders")
    assert from_url("memory://") is not from_url("memory://")


def test_one_store_guards_every_queue_of_the_app(clock: FakeClock, store: MemoryStore) -> None:
    critical = MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))
    default = MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))
    app = cq.App("shop", queues={"critical": critical, "default": default}, store=store)
    runs: list[str] = []

    @app.job(queue="critical")
    def charge(payload: Order) -> None:
        runs.append(f"charge {payload.order_id}")

    @app.job  # unguarded, on "default": the store's run step lets it through
    def ship(payload: Order) -> None:
        runs.append(f"ship {payload.order_id}")

    charge.enqueue(Order(order_id="o-1"), idempotency_key="charge-o-1")
    # another producer's copies: one on the job's queue, one sent to the other queue
    body = app._build(charge, Order(order_id="o-1"), idempotency_key="charge-o-1").body
    critical.send([OutgoingMessage(body=body, job_id="copy-1", job_type="charge")])
    default.send([OutgoingMessage(body=body, job_id="copy-2", job_type="charge")])
    ship.enqueue(Order(order_id="o-2"))
    ship.enqueue(Order(order_id="o-2"))  # no key: both run
    report = app.drain(queues=["critical", "default"])
    assert sorted(runs) == ["charge o-1", "ship o-2", "ship o-2"]
    assert (report.succeeded, report.skipped) == (3, 2)
    record = app.store_record(idempotency_key="charge-o-1")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1


def test_the_worker_on_several_queues_goes_through_the_store(clock: FakeClock, store: MemoryStore) -> None:
    critical = MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))
    bulk = MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))
    app = cq.App("shop", queues={"critical": critical, "default": bulk}, store=store)
    runs: list[str] = []

    @app.job(once=True)
    def export(payload: Order) -> None:
        runs.append(payload.order_id)

    message = export.message(Order(order_id="o-3"))
    export.enqueue_many([message])
    # the same job id redelivered through the other queue (a redrive into it, say)
    critical.send([OutgoingMessage(body=message.body, job_id=message.job_id, job_type="export")])
    bulk.send([OutgoingMessage(body=message.body, job_id=message.job_id, job_type="export")])
    worker = app.worker(queues=["critical", "default"], strategy="weighted", concurrency=1,
                        poll_wait=timedelta(seconds=0.05), handle_signals=False)
    worker.run(until_empty=True)
    assert runs == ["o-3"]
    assert (worker.stats.succeeded, worker.stats.skipped) == (1, 2)
