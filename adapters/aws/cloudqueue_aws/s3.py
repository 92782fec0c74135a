"""The claim check's S3 store: ``s3://BUCKET/PREFIX`` (boto3 imported on first use).

    app = cq.App("shop", backend="sqs://orders", payload_store="s3://shop-payloads/jobs")

URL options, as for ``sqs://``: ``region``, ``endpoint_url`` (e.g. a local S3). Objects
are ``<PREFIX>/<job id>/<sha256>``, written with ``PutObject`` (content type
``application/json``), read with ``GetObject`` and removed with ``DeleteObject`` once the
job succeeded. A bucket lifecycle rule on the prefix (the Terraform module
``aws-sqs-lambda`` writes one) removes what a failed delete or an abandoned send leaves.

IAM the consumer needs: ``s3:GetObject`` and ``s3:DeleteObject`` on ``BUCKET/PREFIX/*``;
the producer ``s3:PutObject`` there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudqueue import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    PermissionDenied,
    Throttled,
)
from cloudqueue.backends.options import parse_options
from cloudqueue.payloads import PayloadStore

from ._errors import DENIED, THROTTLED, UNAVAILABLE, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3PayloadStore", "from_url"]

#: URL query options of ``s3://`` payload stores
OPTIONS = ("region", "endpoint_url")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_SLOW_DOWN = frozenset({"SlowDown", "503"})


class S3PayloadStore(PayloadStore):
    """Payload objects in one S3 bucket under a prefix.

    Args:
        bucket: the bucket's name.
        prefix: the key prefix (no leading or trailing slash; may be empty).
        client: a boto3 S3 client to use (default: one made on first use, from ``region``
            and ``endpoint_url``).
    """

    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client | None = None,
                 region: str | None = None, endpoint_url: str | None = None) -> None:
        if not bucket:
            raise ConfigurationError("S3PayloadStore needs a bucket: s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._region = region
        self._endpoint_url = endpoint_url
        self._owns_client = client is None
        self._lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        """The boto3 client (made on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _make_client(self._region, self._endpoint_url)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        with _translated(f"PutObject(s3://{self.bucket}/{self._key(key)})"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ContentType="application/json")

    def get(self, key: str) -> bytes | None:
        with _translated(f"GetObject(s3://{self.bucket}/{self._key(key)})", missing_ok=True) as missing:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                return body.read()
            finally:
                body.close()
        assert missing
        return None

    def delete(self, key: str) -> None:
        with _translated(f"DeleteObject(s3://{self.bucket}/{self._key(key)})"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None


def _make_client(region: str | None, endpoint_url: str | None) -> S3Client:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError('the s3 payload store needs boto3: pip install "cloudqueue[aws]"') from exc
    from botocore.exceptions import NoRegionError

    try:
        client: S3Client = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
    except NoRegionError as exc:
        raise ConfigurationError("S3 needs a region and none is set: s3://BUCKET/PREFIX?region=eu-west-1 "
                                 "or AWS_DEFAULT_REGION") from exc
    return client


class _Missing:
    """Set when the object was not there (``get`` returns None then)."""

    def __init__(self) -> None:
        self.value = False

    def __bool__(self) -> bool:
        return self.value


@contextmanager
def _translated(action: str, *, missing_ok: bool = False) -> Iterator[_Missing]:
    """Run one S3 call; botocore's errors become cloudqueue errors (``from`` the original)."""
    missing = _Missing()
    try:
        yield missing
    except BackendError:
        raise
    except Exception as exc:
        mapped = _translate(exc, action)
        if mapped is None and missing_ok:
            missing.value = True
            return
        if mapped is None:
            mapped = BackendError(f"S3 {action} failed: {exc}")
        if mapped is exc:
            raise
        raise mapped from exc


def _translate(exc: Exception, action: str) -> Exception | None:
    """The cloudqueue error for a botocore error; None for a missing object."""
    module = type(exc).__module__
    if not (module.startswith("botocore") or module.startswith("boto3")):
        return exc
    code = error_code(exc)
    text = f"S3 {action} failed: {exc}"
    if code in _MISSING:
        return None
    if code == "NoSuchBucket":
        return ConfigurationError(text + "; create the bucket (Terraform module aws-sqs-lambda, "
                                  "payload_bucket) or fix the payload_store URL")
    if code in DENIED or code in ("403", "Forbidden") or _status(exc) == 403:
        return PermissionDenied(text + "; grant s3:PutObject (producer), s3:GetObject and "
                                "s3:DeleteObject (consumer) on the bucket's prefix, over HTTPS (the "
                                "module's bucket policy refuses plain HTTP)")
    if code in THROTTLED or code in _SLOW_DOWN:
        return Throttled(text)
    status = _status(exc)
    if code in UNAVAILABLE or status >= 500:
        return BackendUnavailable(text)
    if not code:
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "NoRegionError", "ParamValidationError"):
            return ConfigurationError(text)
        return BackendUnavailable(text)  # no answer at all: connection refused, timeout, DNS
    return BackendError(text)


def _status(exc: BaseException) -> int:
    response: Any = getattr(exc, "response", None)
    try:
        return int((response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def from_url(url: str, *, client: S3Client | None = None) -> S3PayloadStore:
    """Open ``s3://BUCKET[/PREFIX][?region=...&endpoint_url=...]``; no SDK call yet."""
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ConfigurationError(f"not an s3:// URL: {url!r}")
    if not parts.netloc:
        raise ConfigurationError(f"s3:// payload store URL {url!r} names no bucket; write s3://BUCKET/PREFIX")
    options = parse_options("s3", parts.query, OPTIONS)
    return S3PayloadStore(parts.netloc, parts.path.strip("/"), client=client,
                          region=options.get("region") or None,
                          endpoint_url=options.get("endpoint_url") or None)
