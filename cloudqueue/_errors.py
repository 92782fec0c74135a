"""The exception hierarchy.

    CloudQueueError
     ├── ConfigurationError      a job, app or backend is set up wrongly
     │    └── UnknownJobError    a job name nobody registered
     ├── PayloadError            a payload does not fit its job's model (or the wire)
     ├── UnsupportedFeature      an option the chosen backend cannot honour
     ├── BackendError            the queue service said no
     │    ├── QueueNotFound
     │    ├── PermissionDenied
     │    ├── Throttled
     │    └── BackendUnavailable
     └── (job control, raised by job code, not errors of the library)
          Permanent              fail now: no retry, straight to dead letters
          RetryLater             retry after a given delay

Adapters translate their SDK's errors at one boundary: ``raise QueueNotFound(...) from exc``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class CloudQueueError(Exception):
    """Root of every error cloudqueue raises."""


class ConfigurationError(CloudQueueError):
    """A job, an app or a backend is configured wrongly."""


class UnknownJobError(ConfigurationError):
    """A job type that no job registered under that name."""


class PayloadError(CloudQueueError, ValueError):
    """A payload does not validate against its job's model, or cannot travel on the wire.

    ``job`` names the job, ``errors`` holds pydantic's error list (empty when the
    problem is not a validation error, e.g. the message is too large).
    """

    def __init__(self, message: str, *, job: str | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.job = job
        self.errors: list[dict[str, Any]] = errors or []

    @classmethod
    def from_validation(cls, job: str, exc: ValidationError, *, fix: str | None = None) -> PayloadError:
        """Build a readable error from a pydantic ``ValidationError``."""
        errors = exc.errors(include_url=False)
        lines = []
        for err in errors:
            loc = ".".join(str(part) for part in err.get("loc", ())) or "<payload>"
            lines.append(f"  field {loc!r}: {err.get('msg')} (got {_short(err.get('input'))})")
        hint = fix or f"pass a payload that validates against the model of job {job!r}"
        text = (f"invalid payload for job {job!r}: {len(errors)} error(s)\n"
                + "\n".join(lines) + f"\n  fix: {hint}")
        return cls(text, job=job, errors=[dict(e) for e in errors])


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class UnsupportedFeature(CloudQueueError):
    """An option the chosen backend cannot honour; cloudqueue never drops one silently."""


class BackendError(CloudQueueError):
    """The queue service refused or failed a call."""


class QueueNotFound(BackendError):
    """The queue (or its dead-letter queue) does not exist."""


class PermissionDenied(BackendError):
    """The credentials in use may not perform this call."""


class Throttled(BackendError):
    """The service asked to slow down; retrying later is safe."""


class BackendUnavailable(BackendError):
    """The service could not be reached or failed on its side."""


class Permanent(Exception):
    """Raise from a job to fail it at once: no retry, straight to dead letters."""

    def __init__(self, reason: str = "permanent failure") -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(Exception):
    """Raise from a job to retry it after ``delay``; this counts as an attempt."""

    def __init__(self, delay: timedelta, reason: str = "retry requested") -> None:
        if not isinstance(delay, timedelta):
            raise TypeError(f"RetryLater needs a datetime.timedelta, got {type(delay).__name__}")
        if delay < timedelta(0):
            raise ValueError("RetryLater delay must not be negative")
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
