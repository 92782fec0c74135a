"""What both Google backends share: URL options, SDK import hints, error translation."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NoReturn

from cloudqueue import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    PermissionDenied,
    QueueNotFound,
    Throttled,
)
from cloudqueue.backends.options import parse_bool, parse_options, parse_seconds

__all__ = ["INSTALL_HINT", "parse_bool", "parse_options", "parse_seconds", "require", "sdk_errors",
           "translate", "truncate"]

INSTALL_HINT = 'pip install "cloudqueue[gcp]"'

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


def translate(exc: Exception, what: str) -> NoReturn:
    """Raise the cloudqueue error for a google-api-core error (the one SDK boundary)."""
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
    from google.api_core import exceptions as gexc

    return (gexc.GoogleAPIError,)
