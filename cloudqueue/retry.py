"""How often a job is tried and how long it waits in between."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from ._errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before retry n: ``initial * factor ** (n - 1)``, capped at ``maximum``.

    With ``jitter`` the wait is drawn uniformly from [wait / 2, wait] ("equal jitter"),
    so retries of many failed jobs spread out but never come sooner than half the step.
    Build one with ``Backoff.fixed`` or ``Backoff.exponential``.
    """

    initial: timedelta
    factor: float = 2.0
    maximum: timedelta = timedelta(minutes=5)
    jitter: bool = True

    def __post_init__(self) -> None:
        for name in ("initial", "maximum"):
            value = getattr(self, name)
            if not isinstance(value, timedelta):
                raise ConfigurationError(
                    f"Backoff {name} must be a datetime.timedelta, got {value!r}; "
                    f"write e.g. {name}=timedelta(seconds=1)")
            if value < timedelta(0):
                raise ConfigurationError(f"Backoff {name} must not be negative, got {value}")
        if self.factor < 1:
            raise ConfigurationError(f"Backoff factor must be >= 1, got {self.factor}")
        if self.maximum < self.initial:
            raise ConfigurationError(
                f"Backoff maximum ({self.maximum}) is shorter than initial ({self.initial})")

    @classmethod
    def fixed(cls, delay: timedelta) -> Backoff:
        """The same wait before every retry, no jitter."""
        return cls(initial=delay, factor=1.0, maximum=delay, jitter=False)

    @classmethod
    def exponential(cls, initial: timedelta = timedelta(seconds=1), factor: float = 2.0,
                    maximum: timedelta = timedelta(minutes=5), jitter: bool = True) -> Backoff:
        """A wait that grows by ``factor`` per attempt up to ``maximum``."""
        return cls(initial=initial, factor=factor, maximum=maximum, jitter=jitter)

    def ceiling(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based), before jitter."""
        try:
            seconds = self.initial.total_seconds() * self.factor ** max(attempt - 1, 0)
        except OverflowError:
            return self.maximum
        return min(timedelta(seconds=seconds), self.maximum) if seconds < 1e9 else self.maximum

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based), jitter applied."""
        step = self.ceiling(attempt)
        if not self.jitter or not step:
            return step
        return step * (rng or random).uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Retry:
    """``attempts`` counts the first try: ``Retry(attempts=1)`` never retries."""

    attempts: int = 3
    backoff: Backoff = Backoff.exponential()  # noqa: RUF009 - frozen, so one shared default is safe

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise ConfigurationError(
                f"Retry attempts must be an int >= 1 (it counts the first try), got {self.attempts!r}")
        if not isinstance(self.backoff, Backoff):
            raise ConfigurationError(
                f"Retry backoff must be a cq.Backoff, got {self.backoff!r}; "
                "use cq.Backoff.fixed(...) or cq.Backoff.exponential(...)")

    def schedule(self) -> list[timedelta]:
        """The un-jittered waits between attempts (``attempts - 1`` of them)."""
        return [self.backoff.ceiling(n) for n in range(1, self.attempts)]

    @property
    def max_receives(self) -> int:
        """The receive limit a queue's own redrive should have for a job with these attempts.

        See ``max_receives_for``.
        """
        return max_receives_for(self.attempts)


def receive_headroom(attempts: int) -> int:
    """Receives a queue may count beyond a job's attempts without the job having run.

    A queue counts every receive, also those that never start the job: a FIFO message
    held back behind a failing one of its group, records given back near a function's
    deadline or at a worker's shutdown, whole batches lost to a timeout. The queue's own
    redrive (SQS ``maxReceiveCount``, Pub/Sub ``max_delivery_attempts``) must leave room
    for them, so that it only catches messages cloudqueue never settles and a message
    never reaches dead letters without a cloudqueue reason: ``max(attempts, 5)`` more.
    """
    return max(attempts, 5)


def max_receives_for(attempts: int) -> int:
    """``attempts + receive_headroom(attempts)``: the recommended receive limit of a queue."""
    return attempts + receive_headroom(attempts)


DEFAULT_RETRY = Retry()
