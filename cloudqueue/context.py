"""What a running job knows about itself."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .clock import SYSTEM_CLOCK, Clock, parse_time

if TYPE_CHECKING:
    from .chunks import Chunk
    from .flows import Flow
    from .job import Job

#: the W3C trace context of the job running in this context; enqueues made while it runs
#: carry it on, so a trace follows the work from job to job
current_traceparent: ContextVar[str | None] = ContextVar("cloudqueue_traceparent", default=None)


class JobContext:
    """The job's own view of this attempt; pass it as the second parameter of a job.

    Attributes:
        job_id: the id ``enqueue`` returned.
        job_type: the job's registered name.
        attempt: 1-based, counted by the queue (a retry never resets it).
        max_attempts: the job's ``Retry.attempts``.
        idempotency_key: the key given at enqueue, if any.
        deadline: when the function runtime stops this invocation (None outside one).
        traceparent: the W3C trace context the job was enqueued with, if any.
    """

    __slots__ = (
        "_clock",
        "_job",
        "_time",
        "attempt",
        "deadline",
        "idempotency_key",
        "job_id",
        "job_type",
        "max_attempts",
        "traceparent",
    )

    def __init__(self, *, job_id: str, job_type: str, attempt: int, max_attempts: int,
                 enqueued_at: datetime | str, idempotency_key: str | None = None,
                 deadline: datetime | None = None, clock: Clock = SYSTEM_CLOCK,
                 traceparent: str | None = None, job: Job[Any, Any] | None = None) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.idempotency_key = idempotency_key
        self.deadline = deadline
        self.traceparent = traceparent
        self._time: datetime | str = enqueued_at
        self._clock = clock
        self._job = job

    @property
    def enqueued_at(self) -> datetime:
        """When the job was first enqueued (UTC)."""
        if isinstance(self._time, str):
            self._time = parse_time(self._time)
        return self._time

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def remaining(self) -> timedelta | None:
        """Time left before the runtime's deadline, or None when there is none."""
        if self.deadline is None:
            return None
        return max(self.deadline - self._clock.now(), timedelta(0))

    @property
    def flow(self) -> Flow | None:
        """The flow this job is the parent of (its children's ``results`` and ``failures``), or None."""
        from .flows import current

        return current()

    @property
    def chunk(self) -> Chunk:
        """Which chunk of a chunked run this is: ``number`` 0 for the first (``cloudqueue.chunks``)."""
        from .chunks import current

        return current(self)

    def advance(self, next_payload: Any, *, progress: int = 0) -> str | None:
        """Record this chunk's ``progress`` and send the next chunk (its payload: the next
        cursor), or with None mark the run finished; ``chunks.advance`` for the running job.
        Returns the next chunk's job id, or None.

        Raises:
            ConfigurationError: the app has no store, or this context was made by hand.
        """
        from .chunks import advance

        if self._job is None:
            from ._errors import ConfigurationError

            raise ConfigurationError(f"job {self.job_type!r}: ctx.advance needs the context a consumer "
                                     "made for the run; call cloudqueue.chunks.advance(job, ctx, ...) instead")
        return advance(self._job, self, next_payload, progress=progress)

    def __repr__(self) -> str:
        return (f"JobContext(job_id={self.job_id!r}, job_type={self.job_type!r}, "
                f"attempt={self.attempt}/{self.max_attempts})")
