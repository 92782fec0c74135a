"""The claim check: payloads too large for the queue travel through an object store.

    app = cq.App("shop", backend="sqs://orders", payload_store="s3://shop-payloads/jobs")

    enqueue ──> message > offload_above? ──> put <job id>/<sha256> ──> envelope v2 with
                                             (the payload's bytes)     dataref + digest + size
    consume ──> prepare: get, check size and sha256 ──> validate ──> run ──> settle:
                ack / skip: delete the object; retry, dead letter: keep it (a redrive finds it)

Objects are named ``<prefix>/<job id>/<sha256 of the bytes>``. The job id groups a
job's payload where an operator looks for it, and keeps one job's object apart from
another's, so deleting after one job's success never takes a payload another message
still points at (content addressing alone would share one object between equal payloads
of different jobs). The digest in the name means an object, once written, never changes:
a second enqueue under the same idempotency key with other bytes writes another object.
What a deleted or lost object means at consume time is poison, with the reason; a store
that cannot be reached fails the attempt (retried by the job's policy).

Stores by URL: ``memory://`` is built in (``memory://NAME`` is shared inside the process,
``memory://`` private to one app); adapters register more under the entry-point group
``cloudqueue.payload_stores``::

    [project.entry-points."cloudqueue.payload_stores"]
    s3 = "cloudqueue_aws.s3:from_url"

where ``from_url(url: str) -> PayloadStore``. Nothing is imported until a URL asks for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._errors import ConfigurationError, PayloadError
from .._plugins import entry_point_targets, factory_for
from ..envelope import DataRef

if TYPE_CHECKING:
    from ..envelope import Envelope

__all__ = ["ENTRY_POINT_GROUP", "PayloadStore", "fetch", "from_url", "object_key", "offload", "registered_schemes"]

ENTRY_POINT_GROUP = "cloudqueue.payload_stores"

_BUILTIN = {"memory": "cloudqueue.payloads.memory:from_url"}
_INSTALL_HINTS = {
    "s3": 'pip install "cloudqueue[aws]"',
    "gs": 'pip install "cloudqueue[gcp]"',
}


class PayloadStore(ABC):
    """Where offloaded payloads live: put, get and delete bytes by key. Thread-safe.

    ``url`` is the store's own URI (``s3://bucket/prefix``, no trailing slash); an
    object's URI, carried in the envelope's ``dataref``, is ``url + "/" + key``.
    Errors reaching the service are raised as ``cq.BackendError`` subclasses
    (``BackendUnavailable``, ``PermissionDenied``, ...): the consumer retries those.
    """

    #: the URL scheme this store registers under
    scheme: str = ""
    #: the store's URI; object URIs start with it
    url: str = ""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (overwriting is allowed: a key names one content)."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when there is no such object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is not an error."""

    def close(self) -> None:  # noqa: B027 - optional: most stores hold nothing to release
        """Release clients this store made itself."""

    def location(self, key: str) -> str:
        """The URI of the object ``key`` (what ``dataref`` carries)."""
        return f"{self.url}/{key}"

    def key_of(self, location: str) -> str | None:
        """The key of an object URI in this store, or None when it is somewhere else."""
        head = f"{self.url}/"
        if not location.startswith(head) or len(location) == len(head):
            return None
        return location[len(head):]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def object_key(job_id: str, digest_hex: str) -> str:
    """The key a job's payload is stored under: ``<job id>/<sha256 hex>``."""
    return f"{job_id}/{digest_hex}"


def offload(store: PayloadStore, job_id: str, data: bytes) -> DataRef:
    """Write a payload's bytes to ``store``; return the reference the envelope carries."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    key = object_key(job_id, digest)
    store.put(key, data)
    return DataRef(store.location(key), f"sha256:{digest}", len(data))


def fetch(store: PayloadStore | None, env: Envelope) -> bytes:
    """The payload bytes a version 2 envelope points at, checked against its size and digest.

    Raises:
        PayloadError: for good (poison): no payload store on this consumer, a reference
            into another store, a missing object, or bytes that are not what the
            producer wrote.
        BackendError: the store could not be reached (the attempt fails and is retried).
    """
    ref = env.data_ref
    assert ref is not None
    job = env.type
    if store is None:
        raise PayloadError(
            f"job {job!r}: the payload is in a payload store ({ref.ref}, envelope version 2) and "
            f"this app has none; configure cq.App(..., payload_store=...) with the producer's "
            f"store, then redrive", job=job)
    key = store.key_of(ref.ref)
    if key is None:
        raise PayloadError(
            f"job {job!r}: the payload is at {ref.ref}, outside this app's payload store "
            f"{store.url}; give the consumer the producer's payload_store, then redrive", job=job)
    data = store.get(key)
    if data is None:
        raise PayloadError(
            f"job {job!r}: payload object {ref.ref} is missing: deleted after this job already "
            f"succeeded (a duplicate delivery), expired by the store's lifecycle rule (make it "
            f"outlive the queue's and the dead-letter queue's retention), or deleted by hand",
            job=job)
    if len(data) != ref.size:
        raise PayloadError(
            f"job {job!r}: payload object {ref.ref} is {len(data)} bytes, the envelope says "
            f"{ref.size}; it was changed after the job was enqueued", job=job)
    import hashlib

    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if digest != ref.digest:
        raise PayloadError(
            f"job {job!r}: payload object {ref.ref} has digest {digest}, the envelope says "
            f"{ref.digest}; it was changed after the job was enqueued", job=job)
    return data


def registered_schemes() -> list[str]:
    """Every payload-store scheme this installation can open."""
    return sorted({*_BUILTIN, *_entry_points()})


def _entry_points() -> dict[str, str]:
    return entry_point_targets(ENTRY_POINT_GROUP)


def from_url(url: str) -> PayloadStore:
    """Open the payload store a URL names: ``memory://``, ``s3://BUCKET/PREFIX``, ``gs://BUCKET/PREFIX``.

    Raises:
        ConfigurationError: no scheme, an unknown scheme (with a "did you mean" and the
            install hint for first-party adapters), or the store rejects the URL.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"payload_store must be a URL string or a PayloadStore, got {url!r}")
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        raise ConfigurationError(
            f"payload store URL {url!r} has no scheme; write e.g. 's3://my-bucket/jobs', "
            "'gs://my-bucket/jobs' or 'memory://'")
    factory: Callable[[str], PayloadStore] = factory_for("payload store", scheme, url, _BUILTIN, _entry_points,
                                                   _INSTALL_HINTS)
    return factory(url)
