"""The claim check's Cloud Storage store: ``gs://BUCKET/PREFIX`` (google-cloud-storage on first use).

    app = cq.App("shop", backend="pubsub://my-project/orders", payload_store="gs://shop-payloads/jobs")

URL options: ``project`` (default: the credentials'), ``endpoint`` (``HOST:PORT`` of a
local emulator, or a full ``http://`` URL; anonymous credentials then; the SDK's own
``STORAGE_EMULATOR_HOST`` works too). Objects are ``<PREFIX>/<job id>/<sha256>``, removed
once the job succeeded; a bucket lifecycle rule (the Terraform modules ``gcp-pubsub`` and
``gcp-cloud-tasks`` write one) removes what a failed delete or an abandoned send leaves.

IAM the consumer needs on the bucket: ``storage.objects.get`` and ``storage.objects.delete``
(roles/storage.objectUser, or a custom role); the producer ``storage.objects.create``.
Needs ``pip install "cloudqueue-gcp[storage]"`` (google-cloud-storage).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from cloudqueue import BackendError, BackendUnavailable, ConfigurationError, PermissionDenied, Throttled
from cloudqueue.backends.options import parse_options
from cloudqueue.payloads import PayloadStore

__all__ = ["GCSPayloadStore", "from_url"]

INSTALL_HINT = 'pip install "cloudqueue-gcp[storage]"'
#: URL query options of ``gs://`` payload stores
OPTIONS = ("project", "endpoint")


class _Gone(Exception):
    """The object is not there."""


class GCSPayloadStore(PayloadStore):
    """Payload objects in one Cloud Storage bucket under a prefix.

    Args:
        bucket: the bucket's name.
        prefix: the object name prefix (no leading or trailing slash; may be empty).
        client: a ``google.cloud.storage.Client`` to use (default: one made on first use).
        project: the client's project (default: from the credentials or the environment).
        endpoint: an emulator's ``HOST:PORT`` or URL (anonymous credentials).
    """

    scheme = "gs"

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, project: str | None = None,
                 endpoint: str | None = None) -> None:
        if not bucket:
            raise ConfigurationError("GCSPayloadStore needs a bucket: gs://BUCKET/PREFIX")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self._client = client
        self._owns_client = client is None
        self._project = project
        self._endpoint = endpoint
        self._bucket: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The storage client (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _make_client(self._project, self._endpoint)
        return self._client

    def _blob(self, key: str) -> Any:
        if self._bucket is None:
            self._bucket = self.client.bucket(self.bucket_name)
        name = f"{self.prefix}/{key}" if self.prefix else key
        return self._bucket.blob(name)

    def put(self, key: str, data: bytes) -> None:
        blob = self._blob(key)
        with _translated(f"writing {self.location(key)}"):
            blob.upload_from_string(data, content_type="application/json")

    def get(self, key: str) -> bytes | None:
        blob = self._blob(key)
        try:
            with _translated(f"reading {self.location(key)}"):
                data: bytes = blob.download_as_bytes()
        except _Gone:
            return None
        return data

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            with _translated(f"deleting {self.location(key)}"):
                blob.delete()
        except _Gone:
            pass

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            self._client = None
            self._bucket = None


def _make_client(project: str | None, endpoint: str | None) -> Any:
    import importlib

    try:  # untyped: reached through importlib, typed as Any here
        storage: Any = importlib.import_module("google.cloud.storage")
    except ImportError as exc:
        raise ConfigurationError(f"the gs payload store needs google-cloud-storage: {INSTALL_HINT}") from exc
    if endpoint:
        credentials: Any = importlib.import_module("google.auth.credentials")
        AnonymousCredentials = credentials.AnonymousCredentials
        url = endpoint if "://" in endpoint else f"http://{endpoint}"
        return storage.Client(project=project or "local", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": url})
    with _translated("creating the Cloud Storage client"):
        return storage.Client(project=project)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """One Cloud Storage call: a missing object is ``_Gone``; other errors become cloudqueue's."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        message = f"Cloud Storage: {what}: {exc}"
        if isinstance(exc, gexc.NotFound):
            raise _Gone from exc
        if isinstance(exc, aexc.DefaultCredentialsError):
            raise ConfigurationError(
                f"{message}; run `gcloud auth application-default login`, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or run with a service account") from exc
        if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized, aexc.GoogleAuthError)):
            raise PermissionDenied(f"{message}; grant storage.objects.create (producer), "
                                   "storage.objects.get and storage.objects.delete (consumer)") from exc
        if isinstance(exc, gexc.TooManyRequests):
            raise Throttled(message) from exc
        if isinstance(exc, (gexc.ServerError, gexc.RetryError)) or _connection_error(exc):
            raise BackendUnavailable(message) from exc
        if isinstance(exc, gexc.GoogleAPIError):
            raise BackendError(message) from exc
        raise


def _connection_error(exc: Exception) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - google-cloud-storage depends on it
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def from_url(url: str, *, client: Any = None) -> GCSPayloadStore:
    """Open ``gs://BUCKET[/PREFIX][?project=...&endpoint=HOST:PORT]``; no SDK call yet."""
    parts = urlsplit(url)
    if parts.scheme != "gs":
        raise ConfigurationError(f"not a gs:// URL: {url!r}")
    if not parts.netloc:
        raise ConfigurationError(f"gs:// payload store URL {url!r} names no bucket; write gs://BUCKET/PREFIX")
    options = parse_options("gs", parts.query, OPTIONS)
    return GCSPayloadStore(parts.netloc, parts.path.strip("/"), client=client,
                           project=options.get("project") or None, endpoint=options.get("endpoint") or None)
