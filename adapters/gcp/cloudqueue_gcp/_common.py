"""What both Google backends share: URL options, SDK import hints, error translation."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import timedelta
from types import ModuleType
from typing import NoReturn
from urllib.parse import parse_qsl

from cloudqueue import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    PermissionDenied,
    QueueNotFound,
    Throttled,
)

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


def parse_options(scheme: str, query: str, known: Iterable[str]) -> dict[str, str]:
    """Query options of a backend URL, refusing unknown ones with a "did you mean"."""
    names = tuple(known)
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (options: {', '.join(names)})"
            raise ConfigurationError(f"unknown {scheme}:// option {key!r}{hint}")
        options[key] = value
    return options


def parse_bool(scheme: str, name: str, text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{scheme}:// option {name}={text!r} is not a boolean; use true or false")


def parse_seconds(scheme: str, name: str, text: str) -> timedelta:
    try:
        value = float(text)
    except ValueError:
        raise ConfigurationError(f"{scheme}:// option {name}={text!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigurationError(f"{scheme}:// option {name} must not be negative")
    return timedelta(seconds=value)


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
