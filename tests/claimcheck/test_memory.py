"""The claim check on the memory backend and the memory payload store: every rule once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import envelope
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.payloads import PayloadStore
from cloudqueue.payloads.memory import MemoryPayloadStore
from cloudqueue.testing import FakeClock

MB = 1024 * 1024


class Upload(BaseModel):
    name: str
    blob: str


class Strict(BaseModel):
    name: int


def big(n: int = 5 * MB, name: str = "report.csv") -> Upload:
    return Upload(name=name, blob="x" * n)


@pytest.fixture
def store() -> MemoryPayloadStore:
    return MemoryPayloadStore()


@pytest.fixture
def app(cq_backend: MemoryBackend, store: MemoryPayloadStore) -> Iterator[cq.App]:
    app = cq.App("shop", backend=cq_backend, payload_store=store)
    yield app
    app.close()


def only_body(backend: MemoryBackend) -> dict[str, object]:
    [pending] = backend.pending()
    raw: dict[str, object] = json.loads(pending.body)
    return raw


def test_a_5_mb_payload_goes_to_the_store_and_arrives_intact(app: cq.App, cq_backend: MemoryBackend,
                                                              store: MemoryPayloadStore) -> None:
    seen: list[Upload] = []

    @app.job
    def ingest(payload: Upload) -> None:
        seen.append(payload)

    job_id = ingest.enqueue(big())
    body = only_body(cq_backend)
    assert body["cqv"] == envelope.REFERENCE_VERSION and "data" not in body
    [key] = store.object_keys()
    assert key.startswith(f"{job_id}/") and body["dataref"] == store.location(key)
    assert body["cqsize"] == len(store.get(key) or b"")
    assert len(json.dumps(body)) < 1024  # the message itself stays small
    assert app.drain().succeeded == 1
    assert seen == [big()]
    assert store.object_keys() == []  # deleted after the ack


def test_a_payload_under_the_limit_travels_inline_as_version_1(app: cq.App, cq_backend: MemoryBackend,
                                                                store: MemoryPayloadStore) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        pass

    ingest.enqueue(big(1000))
    assert only_body(cq_backend)["cqv"] == 1 and store.object_keys() == []


def test_offload_above_sets_the_threshold(cq_backend: MemoryBackend, store: MemoryPayloadStore) -> None:
    app = cq.App("shop", backend=cq_backend, payload_store=store, offload_above=4096)

    @app.job
    def ingest(payload: Upload) -> None:
        pass

    ingest.enqueue(big(1000))
    assert store.object_keys() == []
    ingest.enqueue(big(5000))
    assert len(store.object_keys()) == 1
    assert app.drain().succeeded == 2 and store.object_keys() == []


def test_enqueue_many_offloads_each_message_on_its_own(app: cq.App, cq_backend: MemoryBackend,
                                                       store: MemoryPayloadStore) -> None:
    names: list[str] = []

    @app.job
    def ingest(payload: Upload) -> None:
        names.append(payload.name)

    ids = ingest.enqueue_many([big(300_000, "a"), big(10, "b"), big(300_000, "c")])
    assert sorted(key.split("/")[0] for key in store.object_keys()) == sorted([ids[0], ids[2]])
    app.drain()
    assert sorted(names) == ["a", "b", "c"] and store.object_keys() == []


def test_a_changed_object_is_dead_lettered_with_its_digest(app: cq.App, cq_backend: MemoryBackend,
                                                           store: MemoryPayloadStore) -> None:
    runs: list[Upload] = []

    @app.job
    def ingest(payload: Upload) -> None:
        runs.append(payload)

    ingest.enqueue(big(400_000))
    [key] = store.object_keys()
    data = store.get(key) or b""
    store.put(key, data.replace(b"xxxx", b"yyyy", 1))  # same size, other bytes
    report = app.drain()
    assert (report.dead_lettered, runs) == (1, [])
    [letter] = cq_backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON
    assert "has digest sha256:" in letter.reason and "changed after the job was enqueued" in letter.reason
    assert store.object_keys() == [key]  # kept with its dead letter


def test_a_missing_object_is_dead_lettered_saying_why_it_may_be_gone(app: cq.App, cq_backend: MemoryBackend,
                                                                      store: MemoryPayloadStore) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(400_000))
    store.delete(store.object_keys()[0])
    assert app.drain().dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "is missing" in letter.reason
    assert "lifecycle rule" in letter.reason


def test_a_consumer_without_a_payload_store_dead_letters_naming_the_fix(
        cq_backend: MemoryBackend, store: MemoryPayloadStore) -> None:
    producer = cq.App("shop", backend=cq_backend, payload_store=store)
    consumer = cq.App("shop", backend=cq_backend)
    producer.job(name="ingest")(_noop)
    consumer.job(name="ingest")(_noop)

    producer.enqueue("ingest", big(400_000))
    assert consumer.drain().dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert "payload_store" in letter.reason and store.url in letter.reason
    assert store.object_keys() != []


def test_a_reference_into_another_store_is_not_followed(cq_backend: MemoryBackend,
                                                        store: MemoryPayloadStore) -> None:
    producer = cq.App("shop", backend=cq_backend, payload_store=store)
    consumer = cq.App("shop", backend=cq_backend, payload_store=MemoryPayloadStore("elsewhere"))
    producer.job(name="ingest")(_noop)
    consumer.job(name="ingest")(_noop)

    producer.enqueue("ingest", big(400_000))
    assert consumer.drain().dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert "outside this app's payload store memory://elsewhere" in letter.reason


def test_an_older_consumer_dead_letters_naming_the_version_it_needs(
        app: cq.App, cq_backend: MemoryBackend, store: MemoryPayloadStore, monkeypatch: pytest.MonkeyPatch) -> None:
    @app.job
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(400_000))
    # a release that reads envelope version 1 only
    monkeypatch.setattr(envelope, "READ_VERSIONS", (1,))
    assert app.drain().dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON
    assert "envelope version 2" in letter.reason and "upgrade cloudqueue" in letter.reason
    assert store.object_keys() != []  # a redrive after the upgrade still finds it


def test_a_redriven_dead_letter_still_finds_its_payload(app: cq.App, cq_backend: MemoryBackend,
                                                         store: MemoryPayloadStore) -> None:
    runs: list[int] = []

    @app.job
    def ingest(payload: Upload) -> None:
        runs.append(len(payload.blob))
        if len(runs) == 1:
            raise cq.Permanent("the warehouse was closed")

    ingest.enqueue(big())
    assert app.drain().dead_lettered == 1
    assert len(store.object_keys()) == 1
    assert cq_backend.redrive() == 1
    assert app.drain().succeeded == 1
    assert runs == [5 * MB, 5 * MB] and store.object_keys() == []


def test_a_retry_keeps_the_object_until_the_job_succeeds(app: cq.App, store: MemoryPayloadStore,
                                                          cq_clock: FakeClock) -> None:
    runs: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=5))))
    def ingest(payload: Upload, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)
        assert len(store.object_keys()) == 1
        if ctx.attempt < 3:
            raise ConnectionError("later")

    ingest.enqueue(big(400_000))
    report = app.drain(follow_delays=True)
    assert (report.retried, report.succeeded, runs) == (2, 1, [1, 2, 3])
    assert store.object_keys() == []


def test_a_delayed_message_is_fetched_once_when_it_is_due(app: cq.App, store: MemoryPayloadStore,
                                                           cq_clock: FakeClock) -> None:
    reads: list[str] = []
    get = store.get

    def counting_get(key: str) -> bytes | None:
        reads.append(key)
        return get(key)

    store.get = counting_get  # type: ignore[method-assign]

    @app.job
    def ingest(payload: Upload) -> None:
        pass

    ingest.enqueue(big(400_000), delay=timedelta(hours=1))
    assert app.drain().processed == 0
    cq_clock.advance(timedelta(hours=1))
    assert app.drain().succeeded == 1 and len(reads) == 1


class Unreachable(MemoryPayloadStore):
    """A store whose service is down for the first ``outages`` reads."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def get(self, key: str) -> bytes | None:
        if self.outages:
            self.outages -= 1
            raise cq.BackendUnavailable("S3 GetObject failed: connection refused")
        return super().get(key)


def test_an_unreachable_store_fails_the_attempt_and_the_retry_runs_it(cq_backend: MemoryBackend) -> None:
    store = Unreachable(outages=1)
    app = cq.App("shop", backend=cq_backend, payload_store=store)
    runs: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def ingest(payload: Upload, ctx: cq.JobContext) -> None:
        runs.append(ctx.attempt)

    ingest.enqueue(big(400_000))
    report = app.drain(follow_delays=True)
    assert (report.retried, report.succeeded, runs) == (1, 1, [2])
    assert "the payload could not be fetched: BackendUnavailable" in str(report.results[0].reason)


def test_a_store_that_stays_down_ends_in_dead_letters_as_exhausted(cq_backend: MemoryBackend) -> None:
    store = Unreachable(outages=10)
    app = cq.App("shop", backend=cq_backend, payload_store=store)

    @app.job(retry=cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def ingest(payload: Upload) -> None:
        raise AssertionError("must not run")

    ingest.enqueue(big(400_000))
    assert app.drain(follow_delays=True).dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert letter.kind is cq.ReasonKind.EXHAUSTED and "payload could not be fetched" in letter.reason
    assert len(store.object_keys()) == 1


def test_a_payload_that_fails_its_model_after_the_fetch_is_poison(app: cq.App, cq_backend: MemoryBackend,
                                                                   store: MemoryPayloadStore) -> None:
    @app.job(name="strict")
    def strict(payload: Strict) -> None:
        raise AssertionError("must not run")

    # a producer with an older model wrote a string where the consumer wants an int
    data = json.dumps({"name": "x" * 10}).encode()
    from cloudqueue.payloads import offload

    ref = offload(store, "j1", data)
    body = envelope.encode_reference(job_id="j1", app="shop", job_type="strict",
                                     time=cq_backend.clock.now(), data_ref=ref)
    cq_backend.send([cq.OutgoingMessage(body=body, job_id="j1", job_type="strict")])
    assert app.drain().dead_lettered == 1
    [letter] = cq_backend.dead_letters()
    assert "invalid payload for job 'strict'" in letter.reason and "field 'name'" in letter.reason


def test_a_shared_named_store_serves_a_producer_and_a_consumer_app(cq_backend: MemoryBackend) -> None:
    producer = cq.App("shop", backend=cq_backend, payload_store="memory://claims-shared")
    consumer = cq.App("shop", backend=cq_backend, payload_store="memory://claims-shared")
    got: list[int] = []
    producer.job(name="ingest")(_noop)

    @consumer.job(name="ingest")
    def ingest(payload: Upload) -> None:
        got.append(len(payload.blob))

    producer.enqueue("ingest", big(400_000))
    assert consumer.drain().succeeded == 1 and got == [400_000]
    assert isinstance(consumer.payload_store, PayloadStore)
    assert consumer.payload_store.object_keys() == []  # type: ignore[attr-defined]


def _noop(payload: Upload) -> None:
    pass


def test_the_environment_names_the_store_when_the_app_does_not(cq_backend: MemoryBackend,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDQUEUE_PAYLOAD_STORE", "memory://from-the-environment")
    app = cq.App("shop", backend=cq_backend)
    ran: list[int] = []

    @app.job
    def ingest(payload: Upload) -> None:
        ran.append(len(payload.blob))

    ingest.enqueue(big(400_000))
    assert app.drain().succeeded == 1 and ran == [400_000]
    assert app.payload_store is not None and app.payload_store.url == "memory://from-the-environment"


@pytest.mark.parametrize(("options", "message"), [
    ({"offload_above": 1000}, "needs a payload_store"),
    ({"payload_store": "memory://", "offload_above": -1}, "offload_above must be a number of bytes"),
    ({"payload_store": 5}, "payload_store must be a URL"),
])
def test_bad_settings_say_what_to_write(options: dict[str, object], message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        cq.App("shop", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("url", "message"), [
    ("gcs://bucket", "did you mean 'gs'"),
    ("bucket/prefix", "has no scheme"),
    ("memory://a/b", "takes a name only"),
])
def test_a_bad_store_url_is_refused_on_first_use(url: str, message: str) -> None:
    app = cq.App("shop", payload_store=url)
    with pytest.raises(cq.ConfigurationError, match=message):
        app.payload_store  # noqa: B018


def test_a_message_too_large_without_a_store_names_the_payload_store_fix(cq_backend: MemoryBackend) -> None:
    app = cq.App("shop", backend=cq_backend)

    @app.job
    def ingest(payload: Upload) -> None:
        pass

    with pytest.raises(cq.PayloadError, match="payload_store="):
        ingest.enqueue(big(400_000))


def test_import_cloudqueue_loads_no_claim_check_code() -> None:
    code = ("import sys, cloudqueue as cq; app = cq.App('shop'); "
            "print(any(m.startswith('cloudqueue.payloads') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_dashboard_shows_a_dead_letters_payload_reference(app: cq.App, cq_backend: MemoryBackend,
                                                               store: MemoryPayloadStore) -> None:
    from cloudqueue.dashboard._health import view_letter

    @app.job
    def ingest(payload: Upload) -> None:
        raise cq.Permanent("closed")

    ingest.enqueue(big(400_000))
    app.drain()
    [letter] = cq_backend.dead_letters()
    view = view_letter(letter)
    [key] = store.object_keys()
    assert view.payload == f"(in the payload store: {store.location(key)}, {400_000 + 31} bytes)"
    assert view.envelope is not None and view.envelope["payload object"] == store.location(key)


def test_each_queue_of_an_app_offloads_at_its_own_limit(store: MemoryPayloadStore, cq_clock: FakeClock) -> None:
    small = MemoryBackend(clock=cq_clock, max_message_size=64 * 1024)
    roomy = MemoryBackend(clock=cq_clock, max_message_size=1024 * 1024)
    app = cq.App("shop", queues={"critical": small, "default": roomy}, payload_store=store)
    ran: list[tuple[str, int]] = []

    @app.job(queue="critical")
    def urgent(payload: Upload) -> None:
        ran.append(("critical", len(payload.blob)))

    @app.job
    def ingest(payload: Upload) -> None:
        ran.append(("default", len(payload.blob)))

    urgent.enqueue(big(100_000))  # over the critical queue's 64 KiB: offloaded
    ingest.enqueue(big(100_000))  # within the default queue's 1 MiB: inline
    assert len(store.object_keys()) == 1
    assert app.drain().succeeded == 2
    assert sorted(ran) == [("critical", 100_000), ("default", 100_000)] and store.object_keys() == []
