"""Test helpers, and a pytest plugin (registered automatically) with fixtures.

Fixtures:
    cq_clock    a ``FakeClock`` starting at 2030-01-01T00:00:00Z
    cq_backend  a private ``MemoryBackend`` on that clock
    cq_app      an ``App("test")`` on that backend

Helpers for your own app::

    from cloudqueue.testing import FakeClock, enqueued, use_backend

    def test_checkout_sends_receipt(cq_backend):
        with use_backend(app, cq_backend):
            checkout(order)
            assert enqueued(cq_backend, "send_receipt") == [{"to": "a@b.c", "order_id": "1"}]
            app.drain(fail_fast=True)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ._errors import ConfigurationError
from .app import App
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .envelope import decode

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pytest = None  # type: ignore[assignment]

__all__ = ["EnqueuedJob", "FakeClock", "enqueued", "enqueued_jobs", "use_backend"]

EPOCH = datetime(2030, 1, 1, tzinfo=timezone.utc)


class FakeClock:
    """A clock that moves only when told: ``advance``, or ``sleep`` (which just jumps)."""

    def __init__(self, start: datetime = EPOCH) -> None:
        if start.tzinfo is None:
            raise ConfigurationError("FakeClock needs an aware start time")
        self._now = start.timestamp()
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._now

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now, timezone.utc)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(timedelta(seconds=seconds))

    def advance(self, delta: timedelta) -> None:
        """Move time forward by ``delta``."""
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += delta.total_seconds()

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"


@dataclass(frozen=True)
class EnqueuedJob:
    """A job waiting in a memory backend, decoded."""

    job_type: str
    job_id: str
    payload: Any
    due_at: datetime
    idempotency_key: str | None
    attempts_so_far: int


def enqueued_jobs(backend: Backend, job_type: str | None = None) -> list[EnqueuedJob]:
    """Every job not yet settled in a memory backend (optionally of one type), oldest first."""
    if not isinstance(backend, MemoryBackend):
        raise ConfigurationError("enqueued_jobs() inspects a MemoryBackend; got "
                                 f"{type(backend).__name__}")
    jobs = []
    for msg in backend.pending():
        env = decode(msg.body)
        if job_type is None or env.type == job_type:
            jobs.append(EnqueuedJob(env.type, env.id, env.data, msg.due_at, env.key, msg.receives))
    return jobs


def enqueued(backend: Backend, job_type: str) -> list[Any]:
    """The payloads (as JSON data) of the ``job_type`` jobs waiting in a memory backend."""
    return [job.payload for job in enqueued_jobs(backend, job_type)]


@contextlib.contextmanager
def use_backend(app: App, backend: Backend, queue: str | None = None) -> Iterator[Backend]:
    """Point ``app`` (its queue ``queue``, default: its default queue) at ``backend`` for the
    duration of the block (e.g. your app in tests)."""
    name = app.default_queue if queue is None else app.check_queue(queue)
    previous = app._swap_queue(name, backend, backend)
    try:
        yield backend
    finally:
        app._swap_queue(name, *previous)


if pytest is not None:

    @pytest.fixture
    def cq_clock() -> FakeClock:
        """A fake clock at 2030-01-01T00:00:00Z."""
        return FakeClock()

    @pytest.fixture
    def cq_backend(cq_clock: FakeClock) -> Iterator[MemoryBackend]:
        """A private memory backend on ``cq_clock``."""
        backend = MemoryBackend(clock=cq_clock)
        yield backend
        backend.close()

    @pytest.fixture
    def cq_app(cq_backend: MemoryBackend) -> Iterator[App]:
        """An empty ``App("test")`` on ``cq_backend``; register jobs on it in the test."""
        app = App("test", backend=cq_backend)
        yield app
        app.close()
