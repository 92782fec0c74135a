"""Rate and concurrency limits per job, enforced by the worker across its threads.

    @app.job(rate_limit="10/s", concurrency=5)
    def charge(payload: Charge) -> None: ...

    @app.job(rate_limit=cq.RateLimit("2/s", key=lambda p: p.tenant))   # per tenant
    def sync(payload: Sync) -> None: ...

Before a job runs, the worker takes a token from the job's bucket (``"N/s"``, ``"N/m"``,
``"N/h"``: N runs per period, bursts of up to N) and a place under its concurrency
limit. A job held back by either is deferred, not run: its message goes back to the
queue for the time the bucket needs (rate) or ``retry_after`` (concurrency) without
spending an attempt (``cq.Defer``).

Where limits hold:

- In one worker process, across its threads: exactly. Several worker processes each
  apply the limits on their own, so N processes allow up to N times the rate and the
  concurrency (per key as well), until a shared ``LimitStore`` is given.
- In a function runtime the platform's own settings do it: ``cloudqueue terraform-vars``
  maps ``concurrency`` to the Lambda mapping's ``maximum_concurrency`` and Cloud Tasks'
  ``max_concurrent_dispatches``, and ``rate_limit`` to Cloud Tasks'
  ``max_dispatches_per_second``. The shims do not defer (a deferral there would spend a
  receive on every invocation).
- ``app.drain()`` (tests, scripts) runs everything due at once and ignores limits.

``LimitStore`` is the seam for a store shared by every consumer (a counter table, a
Redis): ``LocalLimits`` is the in-process one.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ConfigurationError, Defer

if TYPE_CHECKING:
    from .dispatch import Task
    from .job import Job

__all__ = ["Concurrency", "JobLimits", "LimitStore", "LocalLimits", "RateLimit", "parse_rate"]

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$"
KeyFunction = Callable[[Any], Any]
#: token buckets kept before idle ones are forgotten (per-key limits make one per key)
_PRUNE_AT = 10_000


def parse_rate(text: str, job: str = "?") -> tuple[float, float]:
    """``"10/s"`` -> (10.0, 1.0): runs, and the period in seconds.

    Raises:
        ConfigurationError: naming the job, the value and the accepted forms.
    """
    match = re.match(_RATE, text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"job {job!r}: rate_limit {text!r} is not a rate; write \"N/s\", \"N/m\" or \"N/h\" "
            "with N > 0 (runs per second, minute or hour), e.g. rate_limit=\"10/s\"")
    return float(match.group(1)), _PERIODS[match.group(2)]


@dataclass(frozen=True)
class RateLimit:
    """At most ``rate`` runs (``"10/s"``, ``"100/m"``, ``"5/h"``), per ``key(payload)`` if given."""

    rate: str
    key: KeyFunction | None = None

    def parsed(self, job: str) -> tuple[float, float]:
        return parse_rate(self.rate, job)

    @property
    def per_second(self) -> float:
        count, period = parse_rate(self.rate)
        return count / period


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` runs at once, per ``key(payload)`` if given; a job over it is
    deferred for ``retry_after``."""

    limit: int
    key: KeyFunction | None = None
    retry_after: timedelta = timedelta(seconds=1)


@dataclass(frozen=True)
class JobLimits:
    """A job's limits, as ``@app.job(rate_limit=..., concurrency=...)`` declared them."""

    rate: RateLimit | None = None
    concurrency: Concurrency | None = None

    @classmethod
    def build(cls, job: str, rate_limit: str | RateLimit | None,
              concurrency: int | Concurrency | None) -> JobLimits | None:
        """Check and normalise the decorator's options (None: no limits).

        Raises:
            ConfigurationError: naming the job, the option and the fix.
        """
        rate: RateLimit | None
        if rate_limit is None:
            rate = None
        elif isinstance(rate_limit, RateLimit):
            rate = rate_limit
        elif isinstance(rate_limit, str):
            rate = RateLimit(rate_limit)
        else:
            raise ConfigurationError(f"job {job!r}: rate_limit must be a string like \"10/s\" or a "
                                     f"cq.RateLimit, got {rate_limit!r}")
        if rate is not None:
            rate.parsed(job)
            if rate.key is not None and not callable(rate.key):
                raise ConfigurationError(f"job {job!r}: RateLimit key must be a function of the payload")
        conc: Concurrency | None
        if concurrency is None:
            conc = None
        elif isinstance(concurrency, Concurrency):
            conc = concurrency
        elif type(concurrency) is int:
            conc = Concurrency(concurrency)
        else:
            raise ConfigurationError(f"job {job!r}: concurrency must be an int >= 1 or a "
                                     f"cq.Concurrency, got {concurrency!r}")
        if conc is not None:
            if type(conc.limit) is not int or conc.limit < 1:
                raise ConfigurationError(f"job {job!r}: concurrency must be an int >= 1, got {conc.limit!r}")
            if conc.key is not None and not callable(conc.key):
                raise ConfigurationError(f"job {job!r}: Concurrency key must be a function of the payload")
            if not isinstance(conc.retry_after, timedelta) or conc.retry_after <= timedelta(0):
                raise ConfigurationError(f"job {job!r}: Concurrency retry_after must be a positive timedelta")
        if rate is None and conc is None:
            return None
        return cls(rate, conc)


class LimitStore(Protocol):
    """Where limit state lives. Every method is called from many threads at once.

    ``bucket`` is ``(job, key)``; ``key`` is None for a job-wide limit.
    """

    def take_token(self, bucket: tuple[str, Any], count: float, period: float, now: float) -> float:
        """Take one token; return 0.0, or the seconds until one will be there (none taken)."""

    def enter(self, bucket: tuple[str, Any], limit: int) -> bool:
        """Take a place under ``limit`` running; False when all are taken."""

    def leave(self, bucket: tuple[str, Any]) -> None:
        """Give back a place ``enter`` gave."""


class LocalLimits:
    """Limit state in this process: token buckets and counters under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, Any], tuple[float, float]] = {}  # -> (tokens, at)
        self._running: dict[tuple[str, Any], int] = {}
        self._periods: dict[str, float] = {}  # job -> its rate's period, to tell idle buckets

    def take_token(self, bucket: tuple[str, Any], count: float, period: float, now: float) -> float:
        per_second = count / period
        with self._lock:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune(now)
            tokens, at = self._buckets.get(bucket, (count, now))
            self._periods[bucket[0]] = period
            tokens = min(count, tokens + max(now - at, 0.0) * per_second)
            if tokens >= 1.0 - 1e-9:  # float sums of refills fall a hair short
                self._buckets[bucket] = (max(tokens - 1.0, 0.0), now)
                return 0.0
            self._buckets[bucket] = (tokens, now)
            return (1.0 - tokens) / per_second

    def _prune(self, now: float) -> None:
        # Per-key buckets (one per tenant, say) would grow for ever: forget those that have
        # been idle a whole period, which are full again (a fresh bucket is full too).
        idle = [bucket for bucket, (_, at) in self._buckets.items() if now - at >= self._periods.get(bucket[0], 0.0)]
        for bucket in idle:
            del self._buckets[bucket]

    def enter(self, bucket: tuple[str, Any], limit: int) -> bool:
        with self._lock:
            running = self._running.get(bucket, 0)
            if running >= limit:
                return False
            self._running[bucket] = running + 1
            return True

    def leave(self, bucket: tuple[str, Any]) -> None:
        with self._lock:
            running = self._running.get(bucket, 0) - 1
            if running > 0:
                self._running[bucket] = running
            else:
                self._running.pop(bucket, None)


class Limiter:
    """Applies jobs' limits around a run: ``admit`` before, ``done`` after."""

    def __init__(self, jobs: Mapping[str, Job[Any, Any]], store: LimitStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = {name: job.limits for name, job in jobs.items() if job.limits is not None}
        self.store: LimitStore = store if store is not None else LocalLimits()
        self.clock = clock
        #: per job: its rate as (count, period), parsed once
        self._rates = {name: limits.rate.parsed(name) for name, limits in self.limits.items()
                       if limits.rate is not None}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def admit(self, task: Task) -> tuple[str, Any] | None:
        """Admit ``task`` or raise ``cq.Defer``; return the concurrency place to give back.

        Raises:
            Defer: the job is over a limit; the delay says when to look again.
        """
        limits = self.limits.get(task.job.name)
        if limits is None:
            return None
        name = task.job.name
        place = None
        conc = limits.concurrency
        if conc is not None:
            place = (name, _key(conc.key, task))
            if not self.store.enter(place, conc.limit):
                raise Defer(conc.retry_after, f"concurrency limit {conc.limit} reached for {_what(place)}")
        rate = limits.rate
        if rate is not None:
            count, period = self._rates[name]
            bucket = (name, _key(rate.key, task))
            wait = self.store.take_token(bucket, count, period, self.clock())
            if wait > 0.0:
                if place is not None:
                    self.store.leave(place)
                # whole seconds: queues delay and hide messages by the second
                raise Defer(timedelta(seconds=max(1, math.ceil(wait))),
                            f"rate limit {rate.rate} reached for {_what(bucket)}")
        return place

    def done(self, place: tuple[str, Any] | None) -> None:
        if place is not None:
            self.store.leave(place)


def _key(key: KeyFunction | None, task: Task) -> Any:
    if key is None:
        return None
    try:
        return key(task.payload)
    except Exception as exc:  # a key function that fails is the job's configuration, said once per run
        raise ConfigurationError(f"job {task.job.name!r}: the limit's key function raised "
                                 f"{type(exc).__name__}: {exc}") from exc


def _what(bucket: tuple[str, Any]) -> str:
    name, key = bucket
    return f"job {name!r}" if key is None else f"job {name!r} key {key!r}"
