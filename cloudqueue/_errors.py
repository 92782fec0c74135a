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
     │    ├── BackendUnavailable
     │    ├── EnqueueError       enqueue_many: not every message reached the queue; says which did
     │    └── StaleDelivery      the message is no longer this consumer's to settle
     └── (job control, raised by job code or middleware, not errors of the library)
          Permanent              fail now: no retry, straight to dead letters
          RetryLater             retry after a given delay (counts as an attempt)
          Skip                   middleware: acknowledge without running the job
          Defer                  middleware: give the message back for later, no attempt spent

Adapters translate their SDK's errors at one boundary: ``raise QueueNotFound(...) from exc``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from pydantic import ValidationError

    from .backends.base import OutgoingMessage


class CloudQueueError(Exception):
    """Root of every error cloudqueue raises."""


class ConfigurationError(CloudQueueError):
    """A job, an app or a backend is configured wrongly."""


class UnknownJobError(ConfigurationError):
    """A job type that no job registered under that name."""


class PayloadError(CloudQueueError, ValueError):
    """A payload does not validate against its job's model, or cannot travel on the wire.

    ``job`` names the job, ``errors`` holds pydantic's error list (empty when the
    problem is not a validation error, e.g. the message is too large), ``index`` the
    position of the failing item in an ``enqueue_many`` call (None elsewhere).
    """

    def __init__(self, message: str, *, job: str | None = None,
                 errors: list[dict[str, Any]] | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.job = job
        self.errors: list[dict[str, Any]] = errors or []
        self.index = index

    def at_item(self, index: int) -> PayloadError:
        """The same error, saying it is item ``index`` (from 0) of an ``enqueue_many``."""
        return PayloadError(f"enqueue_many item {index} (counting from 0): {self}", job=self.job,
                            errors=self.errors, index=index)

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


class StaleDelivery(BackendError):
    """A settle came too late: the message's visibility ran out, so the queue may have given
    it to another consumer; nothing was changed, and the queue delivers it again."""


class EnqueueError(BackendError):
    """Not every message of one ``enqueue_many`` reached the queue; this says which did.

    Attributes:
        job_ids: the id of every item given, in input order (what the call would have
            returned), so ids can be matched to payloads.
        sent: the job ids that reached the queue, in input order.
        not_sent: the job ids that did not, or may not have, in input order.
        errors: job id -> why, for every id in ``not_sent``: the exception, e.g. a
            ``BackendError`` with the service's code and message for a refused entry.
        unknown: the ids of ``not_sent`` whose outcome is unknown: their request went
            out and no answer came back (connection cut, timeout, a 5xx), so they may
            be in the queue. Their error says "unknown: may have been sent".
        not_sent_messages: the messages of ``not_sent``, in the same order; pass them to
            ``job.enqueue_many`` to send exactly those again, with the same job ids.

    The rule: an id is in ``sent`` only when the service confirmed it (the call
    returned, or the service listed the entry as successful); everything else is in
    ``not_sent``. Of those, an id whose call failed with ``BackendUnavailable`` or an
    error that is not a cloudqueue error (see ``outcome_unknown``) is also in
    ``unknown``; any other cloudqueue error (QueueNotFound, PermissionDenied, Throttled,
    a refused entry, a check before sending) means the service did not take it, and an
    id that was never attempted (sending stopped after a failure) was not sent either.
    Ids are listed once each (a repeated idempotency key gives one id).

    Sending ``not_sent`` again is safe: nothing in ``sent`` goes twice. An ``unknown``
    one may already be queued, so sending it again may queue a second copy unless it
    carries an idempotency key on a backend that deduplicates (consumers see
    at-least-once delivery anyway). ``__cause__`` is the first underlying error.
    """

    def __init__(self, message: str | None = None, *, sent: Sequence[str], not_sent: Sequence[str],
                 errors: Mapping[str, Exception], unknown: Iterable[str] = (),
                 job_ids: Sequence[str] | None = None,
                 not_sent_messages: Sequence[OutgoingMessage] = ()) -> None:
        self.sent: list[str] = list(sent)
        self.not_sent: list[str] = list(not_sent)
        self.errors: dict[str, Exception] = dict(errors)
        self.unknown: list[str] = [job_id for job_id in unknown]
        self.job_ids: list[str] = list(job_ids) if job_ids is not None else self.sent + self.not_sent
        self.not_sent_messages: list[OutgoingMessage] = list(not_sent_messages)
        super().__init__(message or self._describe())

    def _describe(self) -> str:
        sent, missing, unknown = len(self.sent), len(self.not_sent), len(self.unknown)
        first = next(iter(self.errors.values()), None)
        text = (f"{sent} of {sent + missing} jobs reached the queue and {missing} did not"
                + (f" (first error: {first})" if first is not None else ""))
        text += ("; sending the not_sent ones again is safe, e.g. job.enqueue_many("
                 "error.not_sent_messages) (same job ids), or give jobs idempotency keys")
        if unknown:
            text += (f"; {unknown} of them are unknown: may have been sent (the request went out "
                     "and no answer came back), so a second send may queue them twice unless "
                     "they carry idempotency keys")
        return text

    @staticmethod
    def outcome_unknown(exc: BaseException) -> bool:
        """Whether a failed send call may still have queued its messages.

        ``BackendUnavailable`` (no answer, a cut connection, a timeout, a 5xx) and any
        error that is not a cloudqueue error may have; any other cloudqueue error is the
        service's (or cloudqueue's own) refusal, so nothing was queued.
        """
        return isinstance(exc, BackendUnavailable) or not isinstance(exc, CloudQueueError)


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


class Skip(Exception):
    """Raise from a middleware's ``run`` to acknowledge the message without running the job
    (e.g. an idempotency store that has seen it complete)."""

    def __init__(self, reason: str = "skipped") -> None:
        super().__init__(reason)
        self.reason = reason


class Defer(Exception):
    """Raise from a middleware's ``run`` to give the message back for ``delay`` without running
    the job; no attempt is spent where the queue can tell (see ``Backend.defer``)."""

    def __init__(self, delay: timedelta, reason: str = "deferred") -> None:
        if not isinstance(delay, timedelta):
            raise TypeError(f"Defer needs a datetime.timedelta, got {type(delay).__name__}")
        if delay < timedelta(0):
            raise ValueError("Defer delay must not be negative")
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
