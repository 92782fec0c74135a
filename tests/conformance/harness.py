"""What the conformance suite needs from a backend under test.

Each backend contributes a ``Harness`` subclass and registers a factory in
``tests/conformance/conftest.py``; every test in this folder then runs against it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import cloudqueue as cq
from cloudqueue.backends.base import Backend, Delivery
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock


class Harness:
    """A backend under test, and how to let time pass and consume on it.

    Attributes:
        backend: the backend every test app uses.
        visibility_timeout: how long a received, unsettled message stays hidden.
        time_unit: the smallest delay the backend honours (tests scale their delays by it).
    """

    name = "?"
    backend: Backend
    #: the idempotency store the dedup tests pair with this backend (tests/store/stores.py)
    store_kind = "memory"
    visibility_timeout = timedelta(seconds=2)
    time_unit = timedelta(seconds=1)
    _apps: list[cq.App]

    def __new__(cls, *args: Any, **kwargs: Any) -> Harness:
        self = super().__new__(cls)
        self._apps = []
        return self

    def app(self, name: str = "conformance", **options: Any) -> cq.App:
        app = cq.App(name, backend=self.backend, **options)
        self._apps.append(app)
        return app

    def other_queue(self) -> Backend:
        """A second queue of the same kind (and settings) as ``backend``."""
        raise NotImplementedError

    def queues_app(self, name: str = "conformance", **options: Any) -> cq.App:
        """An app on two queues: "critical" (a new one) above "default" (``backend``)."""
        app = cq.App(name, queues={"critical": self.other_queue(), "default": self.backend}, **options)
        self._apps.append(app)
        return app

    def advance(self, delta: timedelta) -> None:
        """Let ``delta`` of queue time pass."""
        raise NotImplementedError

    def run_due(self, app: cq.App, queues: list[str] | None = None) -> cq.DrainReport:
        """Run every job that is due now (and any that becomes due while running), from
        ``queues`` (default: all of the app's), higher queues first where consumers pull."""
        raise NotImplementedError

    def receive_unsettled(self, app: cq.App) -> list[Delivery]:
        """Receive what is due and settle nothing: a consumer that died mid-job."""
        return app.backend.receive(max_messages=10, wait=timedelta(seconds=1))

    def dead_letters(self) -> list[cq.DeadLetter]:
        return self.backend.dead_letters()

    def close(self) -> None:
        for app in self._apps:
            app.dispatcher.close()
            for name in app.queue_names:
                if app.queue(name) is not self.backend:
                    app.queue(name).close()
        self.backend.close()


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.options = options
        self.backend = MemoryBackend(clock=self.clock, visibility_timeout=self.visibility_timeout,
                                     **options)

    def other_queue(self) -> Backend:
        return MemoryBackend(clock=self.clock, visibility_timeout=self.visibility_timeout, **self.options)

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)

    def run_due(self, app: cq.App, queues: list[str] | None = None) -> cq.DrainReport:
        return app.drain(queues=queues)


@contextlib.contextmanager
def memory_harness(**options: Any) -> Iterator[Harness]:
    harness = MemoryHarness(**options)
    try:
        yield harness
    finally:
        harness.close()
