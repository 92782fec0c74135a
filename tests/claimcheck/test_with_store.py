"""The claim check beside the idempotency store (memory backend, memory stores): the store
decides first, so a duplicate of an offloaded job is skipped or deferred, never
dead-lettered because its object is gone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import OutgoingMessage
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.payloads.memory import MemoryPayloadStore
from cloudqueue.store import MemoryStore, Status
from cloudqueue.testing import FakeClock


class Upload(BaseModel):
    name: str
    blob: str


def big(name: str = "report.csv") -> Upload:
    return Upload(name=name, blob="x" * 5000)


class CountingStore(MemoryPayloadStore):
    """A memory payload store that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return super().get(key)


class Unreachable(CountingStore):
    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def get(self, key: str) -> bytes | None:
        if self.outages:
            self.outages -= 1
            raise cq.BackendUnavailable("S3 GetObject failed: connection refused")
        return super().get(key)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock, visibility_timeout=timedelta(seconds=30))


@pytest.fixture
def payloads() -> CountingStore:
    return CountingStore()


@pytest.fixture
def app(backend: MemoryBackend, payloads: CountingStore) -> cq.App:
    return cq.App("shop", backend=backend, store=MemoryStore(), payload_store=payloads, offload_above=1024)


def copies(app: cq.App, backend: MemoryBackend, job: cq.Job[Upload, None], n: int, **options: object) -> None:
    """``n`` deliveries of one offloaded message (at-least-once delivery, or a producer's retry)."""
    message = app._build(job, big(), **options)  # type: ignore[arg-type]
    assert message.body.count(b'"cqv":2') == 1  # offloaded
    for i in range(n):
        backend.send([OutgoingMessage(body=message.body, job_id=f"copy-{i}", job_type=job.name)])


def test_a_duplicate_after_success_is_skipped_not_dead_lettered(app: cq.App, backend: MemoryBackend,
                                                                payloads: CountingStore) -> None:
    runs: list[str] = []

    @app.job
    def ingest(payload: Upload) -> None:
        runs.append(payload.name)

    copies(app, backend, ingest, 3, idempotency_key="ingest-report")
    report = app.drain()
    assert (report.succeeded, report.skipped, report.dead_lettered) == (1, 2, 0)
    assert runs == ["report.csv"] and backend.dead_letters() == []
    skipped = [r for r in report.results if r.outcome is cq.Outcome.SKIP]
    assert all("duplicate of completed job ingest" in str(r.reason) for r in skipped)
    assert payloads.gets == 1  # the copies never read the object the first run deleted
    assert payloads.object_keys() == []


def test_a_once_job_without_a_key_is_skipped_the_same_way(app: cq.App, backend: MemoryBackend,
                                                          payloads: CountingStore) -> None:
    runs: list[str] = []

    @app.job(once=True)
    def ingest(payload: Upload) -> None:
        runs.append(payload.name)

    copies(app, backend, ingest, 2)
    report = app.drain()
    assert (report.succeeded, report.skipped, report.dead_lettered) == (1, 1, 0)
    assert runs == ["report.csv"] and payloads.gets == 1


def test_a_second_producers_message_under_the_key_is_skipped_after_the_object_went(
        app: cq.App, backend: MemoryBackend, payloads: CountingStore) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        pass

    # two producers (no enqueue-side dedup between them); the job id comes from the key,
    # so both messages point at one object, which the first success deletes
    for producer in range(2):
        message = app._build(ingest, big("a"), idempotency_key="ingest-a")
        backend.send([OutgoingMessage(body=message.body, job_id=f"p-{producer}", job_type="ingest")])
    assert len(payloads.object_keys()) == 1
    report = app.drain()
    assert (report.succeeded, report.skipped, report.dead_lettered) == (1, 1, 0)
    assert payloads.object_keys() == [] and backend.dead_letters() == []


def test_a_duplicate_during_the_run_is_deferred_without_a_fetch(clock: FakeClock, app: cq.App,
                                                                backend: MemoryBackend,
                                                                payloads: CountingStore) -> None:
    runs: list[int] = []
    inner: list[cq.DrainReport] = []

    @app.job(retry=cq.Retry(attempts=1))
    def ingest(payload: Upload, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:  # while this one runs, its copy arrives and is consumed
            inner.append(app.drain(max_jobs=1))

    copies(app, backend, ingest, 2, idempotency_key="ingest-report")
    app.drain(max_jobs=1)
    [deferred] = inner[0].results
    assert deferred.outcome is cq.Outcome.DEFER and "in progress" in str(deferred.reason)
    assert payloads.gets == 1
    clock.advance(timedelta(seconds=31))
    report = app.drain()
    assert [r.outcome for r in report.results] == [cq.Outcome.SKIP]
    assert runs == [1] and backend.dead_letters() == [] and payloads.gets == 1
    assert payloads.object_keys() == []


def test_a_missing_object_on_a_first_delivery_is_still_poison_and_the_key_is_forgotten(
        app: cq.App, backend: MemoryBackend, payloads: CountingStore) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(), idempotency_key="ingest-report")
    payloads.delete(payloads.object_keys()[0])
    report = app.drain()
    assert report.dead_lettered == 1
    [result] = report.results
    assert result.poison and "is missing" in str(result.reason)
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "is missing" in letter.reason
    assert app.store_record(idempotency_key="ingest-report") is None  # a redrive starts over


def test_a_changed_object_is_poison_and_kept(app: cq.App, backend: MemoryBackend,
                                             payloads: CountingStore) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(), idempotency_key="ingest-report")
    [key] = payloads.object_keys()
    payloads.put(key, (payloads.get(key) or b"")[:-3] + b'y"}')
    assert app.drain().dead_lettered == 1
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "has digest sha256:" in letter.reason
    assert payloads.object_keys() == [key]


def test_an_unreachable_payload_store_fails_inside_the_claim_and_the_retry_runs_it(
        backend: MemoryBackend) -> None:
    payloads = Unreachable(outages=1)
    app = cq.App("shop", backend=backend, store=MemoryStore(), payload_store=payloads, offload_above=1024)
    runs: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def ingest(payload: Upload, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)

    ingest.enqueue(big(), idempotency_key="ingest-report")
    report = app.drain(follow_delays=True)
    assert (report.retried, report.succeeded, runs) == (1, 1, [2])
    assert "the payload could not be fetched: BackendUnavailable" in str(report.results[0].reason)
    record = app.store_record(idempotency_key="ingest-report")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 2
    assert payloads.object_keys() == []


def test_a_payload_store_that_stays_down_ends_in_dead_letters_as_exhausted(backend: MemoryBackend) -> None:
    payloads = Unreachable(outages=10)
    app = cq.App("shop", backend=backend, store=MemoryStore(), payload_store=payloads, offload_above=1024)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(), idempotency_key="ingest-report")
    assert app.drain(follow_delays=True).dead_lettered == 1
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.EXHAUSTED and "payload could not be fetched" in letter.reason
    assert len(payloads.object_keys()) == 1  # kept for a redrive
    assert app.store_record(idempotency_key="ingest-report") is None


def test_middleware_around_the_run_sees_the_payload_after_the_store_claimed(
        backend: MemoryBackend, payloads: CountingStore) -> None:
    seen: list[object] = []

    class Peek(cq.Middleware):
        def run(self, task: object, call_next: object) -> object:
            value = call_next()  # type: ignore[operator]
            seen.append(task.payload)  # type: ignore[attr-defined]
            return value

    app = cq.App("shop", backend=backend, store=MemoryStore(), payload_store=payloads,
                 offload_above=1024, middleware=[Peek()])

    @app.job
    def ingest(payload: Upload) -> None:
        pass

    ingest.enqueue(big(), idempotency_key="ingest-report")
    assert app.drain().succeeded == 1
    assert seen == [big()]


def test_an_unguarded_job_still_fetches_before_the_run(app: cq.App, backend: MemoryBackend,
                                                       payloads: CountingStore) -> None:
    runs: list[str] = []

    @app.job
    def ingest(payload: Upload) -> None:
        runs.append(payload.name)

    ingest.enqueue(big())  # no key, not once: the store does not guard it
    assert app.drain().succeeded == 1
    assert runs == ["report.csv"] and payloads.gets == 1


def test_a_consumer_with_a_store_but_no_payload_store_dead_letters_naming_the_fix(
        backend: MemoryBackend, payloads: CountingStore) -> None:
    producer = cq.App("shop", backend=backend, payload_store=payloads, offload_above=1024)
    consumer = cq.App("shop", backend=backend, store=MemoryStore())
    runs: list[object] = []

    def ingest(payload: Upload) -> None:
        runs.append(payload)

    producer.job(name="ingest")(ingest)
    consumer.job(name="ingest")(ingest)

    producer.enqueue("ingest", big(), idempotency_key="ingest-report")
    assert consumer.drain().dead_lettered == 1
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "payload_store" in letter.reason
    assert runs == [] and payloads.object_keys() != []
