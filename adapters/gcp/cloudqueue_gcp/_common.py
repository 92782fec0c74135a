"""What both Google backends share: URL options, SDK import hints, error translation."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import ModuleType
from typing import Any, NoReturn

from cloudqueue import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    PermissionDenied,
    QueueNotFound,
    Throttled,
)
from cloudqueue.backends.options import parse_bool, parse_options, parse_seconds

__all__ = ["DEFAULT_TIMEOUT", "INSTALL_HINT", "call_retry", "parse_bool", "parse_options", "parse_seconds",
           "parse_timeout", "require", "sdk_errors", "translate", "translated", "truncate"]

INSTALL_HINT = 'pip install "cloudqueue[gcp]"'
#: the longest any one Google call (its retries included) may take, unless ``timeout=`` says
DEFAULT_TIMEOUT = timedelta(seconds=30)

#: attributes cloudqueue writes on Pub/Sub messages and dead letters
ATTR_TYPE = "cq_type"
ATTR_KEY = "cq_key"
ATTR_ID = "cq_id"
ATTR_REASON = "cq_reason"
ATTR_ATTEMPTS = "cq_attempts"
ATTR_DEAD_AT = "cq_dead_lettered_at"
ATTR_SOURCE = "cq_source"
#: Pub/Sub attribute values are limited to 1024 bytes
MAX_ATTRIBUTE = 1000


def require(module: str) -> ModuleType:
    """Import an SDK module, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"{module} is not installed; {INSTALL_HINT}") from exc


def truncate(text: str, limit: int = MAX_ATTRIBUTE) -> str:
    """Cut ``text`` so its UTF-8 form fits in ``limit`` bytes."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def parse_timeout(scheme: str, text: str | None) -> timedelta:
    """The URL's ``timeout`` option (seconds, more than 0), else ``DEFAULT_TIMEOUT``."""
    if not text:
        return DEFAULT_TIMEOUT
    value = parse_seconds(scheme, "timeout", text)
    if value <= timedelta(0):
        raise ConfigurationError(f"{scheme} option timeout must be more than 0 seconds, got {text!r}")
    return value


def call_retry(timeout: timedelta) -> Any:
    """google-api-core's retry for idempotent calls, bounded by ``timeout`` in all."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry

    seconds = timeout.total_seconds()
    return retry.Retry(predicate=retry.if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError,
                                                         gexc.Aborted, gexc.Unknown),
                       initial=0.1, maximum=min(5.0, seconds), multiplier=2, timeout=seconds)


def translate(exc: BaseException, what: str) -> NoReturn:
    """Raise the cloudqueue error for a Google error (the one SDK boundary).

    google-api-core's errors map by kind; google-auth's missing or unusable credentials are
    a ``ConfigurationError`` that says how to provide them; a wait that ran out is
    ``BackendUnavailable``.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    if isinstance(exc, FutureTimeout):
        raise BackendUnavailable(f"{what}: no answer in time") from exc
    try:
        from google.auth import exceptions as aexc
    except ImportError:  # pragma: no cover - google-auth comes with the SDKs
        aexc = None  # type: ignore[assignment]
    if aexc is not None and isinstance(exc, aexc.DefaultCredentialsError):
        raise ConfigurationError(
            f"{what}: no Google credentials ({exc}); run `gcloud auth application-default login`, "
            "set GOOGLE_APPLICATION_CREDENTIALS, run on Google Cloud with a service account, or "
            "point the URL at an emulator (emulator=HOST:PORT / endpoint=HOST:PORT)") from exc
    if aexc is not None and isinstance(exc, aexc.GoogleAuthError):
        raise PermissionDenied(f"{what}: the credentials were refused ({exc})") from exc
    from google.api_core import exceptions as gexc

    message = f"{what}: {exc}"
    if isinstance(exc, gexc.NotFound):
        raise QueueNotFound(message) from exc
    if isinstance(exc, (gexc.PermissionDenied, gexc.Unauthenticated, gexc.Unauthorized, gexc.Forbidden)):
        raise PermissionDenied(message) from exc
    if isinstance(exc, (gexc.TooManyRequests, gexc.ResourceExhausted)):
        raise Throttled(message) from exc
    if isinstance(exc, (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
                        gexc.RetryError, gexc.Unknown, gexc.Aborted)):
        raise BackendUnavailable(message) from exc
    raise BackendError(message) from exc


def sdk_errors() -> tuple[type[Exception], ...]:
    """The exception types ``translate`` understands (google-api-core's, and its retries')."""
    from concurrent.futures import TimeoutError as FutureTimeout

    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    return (gexc.GoogleAPIError, aexc.GoogleAuthError, FutureTimeout)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a Google call; its errors leave as cloudqueue's (``translate``), saying ``what``."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, sdk_errors()):
            translate(exc, what)
        raise
