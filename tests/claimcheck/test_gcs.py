"""The claim check on Google Cloud: Pub/Sub (Google's emulator) pushes the reference to a
function (functions-framework), Cloud Storage (gcp-storage-emulator) holds the payload."""

from __future__ import annotations

import json
from typing import Any

import cloudqueue_gcp
import pytest
from cloudqueue_gcp.gcs import GCSPayloadStore
from cloudqueue_gcp.pubsub import PubSubBackend
from pydantic import BaseModel

import cloudqueue as cq
from tests.conftest import wait_for
from tests.gcp import routing
from tests.gcp.conftest import make_pubsub

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024


class Upload(BaseModel):
    name: str
    blob: str


def big(name: str = "report.csv", n: int = 5 * MB) -> Upload:
    return Upload(name=name, blob=("0123456789abcdef" * (n // 16 + 1))[:n])




def test_from_url_reads_bucket_prefix_and_options() -> None:
    from cloudqueue.payloads import from_url

    store = from_url("gs://shop-payloads/jobs?project=shop&endpoint=127.0.0.1:9")
    assert isinstance(store, GCSPayloadStore)
    assert (store.bucket_name, store.prefix, store.url) == ("shop-payloads", "jobs", "gs://shop-payloads/jobs")
    with pytest.raises(cq.ConfigurationError, match="did you mean 'endpoint'"):
        from_url("gs://b/p?endpiont=x")


def test_the_store_puts_gets_and_deletes_on_the_emulator(gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    store = GCSPayloadStore(bucket, "jobs", endpoint=gcs_emulator.host)
    data = json.dumps(big().model_dump()).encode()
    store.put("j1/abc", data)
    assert store.get("j1/abc") == data
    store.delete("j1/abc")
    assert store.get("j1/abc") is None
    store.delete("j1/abc")  # already gone: fine
    store.close()


def test_a_5_mb_payload_through_pubsub_push_arrives_intact_and_is_deleted(
        emulator: Any, project: str, http_function: Any, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    pubsub = make_pubsub(emulator.host, project, push_endpoint=http_function.url)
    store_url = f"gs://{bucket}/jobs?endpoint={gcs_emulator.host}"
    # Pub/Sub takes 10 MB, but a 5 MB push body (base64: 6.7 MB) is slow and costly: offload
    # anything above 256 KiB
    app = cq.App("shop", backend=pubsub.url(), payload_store=store_url, offload_above=256 * 1024)
    seen: list[Upload] = []

    @app.job
    def ingest(payload: Upload, ctx: cq.JobContext) -> None:
        seen.append(payload)

    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))  # the emulator sends no OIDC
    store = GCSPayloadStore(bucket, "jobs", endpoint=gcs_emulator.host)
    job_id = ingest.enqueue(big())
    assert store.get(f"{job_id}/{_digest(big())}") is not None
    assert wait_for(lambda: len(seen) == 1)
    assert seen == [big()]
    assert wait_for(lambda: store.get(f"{job_id}/{_digest(big())}") is None)
    app.close()


def test_a_changed_object_is_dead_lettered_through_the_push_shim(
        emulator: Any, project: str, http_function: Any, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    pubsub = make_pubsub(emulator.host, project, push_endpoint=http_function.url)
    store = GCSPayloadStore(bucket, "jobs", endpoint=gcs_emulator.host)
    app = cq.App("shop", backend=pubsub.url(), payload_store=store, offload_above=1024)
    ran: list[str] = []

    @app.job
    def ingest(payload: Upload) -> None:
        ran.append(payload.name)

    original = store.put

    def tamper(key: str, data: bytes) -> None:  # what lands in the bucket is not what was sent
        original(key, data.replace(b"0123", b"3210", 1))

    store.put = tamper  # type: ignore[method-assign]
    ingest.enqueue(big(n=MB))
    store.put = original  # type: ignore[method-assign]
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    backend = app.backend
    assert isinstance(backend, PubSubBackend)
    assert wait_for(lambda: len(backend.dead_letters()) == 1)
    [letter] = backend.dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "has digest sha256:" in letter.reason
    assert ran == []
    app.close()


def test_a_payload_over_the_cloud_tasks_limit_goes_through_the_bucket_by_default(
        queues: Any, tasks_server: Any, issuer: Any, http_function: Any, gcs_emulator: Any) -> None:
    bucket = gcs_emulator.make_bucket()
    store = GCSPayloadStore(bucket, "jobs", endpoint=gcs_emulator.host)
    # no offload_above: Cloud Tasks' own 1 MB limit decides
    app = cq.App("shop", backend=queues.url(http_function.url), payload_store=store)
    seen: list[Upload] = []

    @app.job
    def ingest(payload: Upload) -> None:
        seen.append(payload)

    routing.set_http(cloudqueue_gcp.http_handler(app, certs_url=issuer.certs_url))
    small = ingest.enqueue(big("small", 1000))
    large = ingest.enqueue(big("large", 2 * MB))
    assert store.get(f"{small}/{_digest(big('small', 1000))}") is None  # inline
    assert store.get(f"{large}/{_digest(big('large', 2 * MB))}") is not None
    assert sorted(tasks_server.dispatch_due()) == [200, 200]
    assert sorted(p.name for p in seen) == ["large", "small"] and big("large", 2 * MB) in seen
    assert store.get(f"{large}/{_digest(big('large', 2 * MB))}") is None  # deleted after success


def _digest(payload: Upload) -> str:
    import hashlib

    return hashlib.sha256(payload.__pydantic_serializer__.to_json(payload)).hexdigest()
