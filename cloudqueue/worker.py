"""A long-running consumer for pull backends.

``concurrency`` consumer threads each loop: receive a message, run its job, settle it.
A thread receives only when it is free (``prefetch`` messages at a time, 1 by default),
so nothing waits in a local buffer while the queue could give it to another consumer.
Async jobs run on one event loop thread; the consumer that took the message waits for
it. While jobs run, a heartbeat extends the visibility of their messages on backends
that can. On SIGTERM or SIGINT the worker stops receiving, gives back at once anything
it received but had not started, and finishes what it started.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

from ._errors import ConfigurationError
from .backends.base import Backend, Delivery
from .dispatch import Outcome, Result, Task

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from .app import App

log = logging.getLogger("cloudqueue.worker")


@dataclass
class WorkerStats:
    """Counts since the worker started."""

    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    hopped: int = 0
    released: int = 0

    def add(self, other: WorkerStats) -> None:
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.dead_lettered += other.dead_lettered
        self.hopped += other.hopped
        self.released += other.released


_COUNTER = {Outcome.ACK: "succeeded", Outcome.RETRY: "retried", Outcome.DEAD_LETTER: "dead_lettered",
            Outcome.HOP: "hopped"}


class Worker:
    """Consume an app's backend until stopped.

    Args:
        app: the app whose jobs run.
        concurrency: jobs running at once (one consumer thread each).
        poll_wait: how long one receive call may wait for messages (long polling).
        prefetch: messages one consumer takes per receive (more saves calls on remote
            queues; the extra ones wait, hidden and kept alive by the heartbeat).
        heartbeat: how often to extend the visibility of running jobs, on backends
            that can (None: a third of ``visibility_timeout``).
        visibility_timeout: how long each extension hides a running job's message.
        handle_signals: stop gracefully on SIGTERM/SIGINT (main thread only).
    """

    def __init__(self, app: App, *, concurrency: int = 8,
                 poll_wait: timedelta = timedelta(seconds=1), prefetch: int = 1,
                 visibility_timeout: timedelta = timedelta(seconds=30),
                 heartbeat: timedelta | None = None, handle_signals: bool = True) -> None:
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigurationError(f"worker concurrency must be an int >= 1, got {concurrency!r}")
        if type(prefetch) is not int or prefetch < 1:
            raise ConfigurationError(f"worker prefetch must be an int >= 1, got {prefetch!r}")
        self.app = app
        self.concurrency = concurrency
        self.poll_wait = poll_wait
        self.prefetch = prefetch
        self.visibility_timeout = visibility_timeout
        self.heartbeat = heartbeat or visibility_timeout / 3
        self.handle_signals = handle_signals
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[int, Delivery] = {}  # received and not yet settled, for the heartbeat
        self._unstarted: list[Delivery] = []  # received after stop: given back at the end
        self._busy: list[bool] = []  # per consumer: running jobs now
        self._until_empty = False
        self._loop: AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to stop: no new receives; running jobs finish."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until_empty: bool = False) -> WorkerStats:
        """Consume until ``stop()`` or a signal.

        Args:
            until_empty: also stop once the queue holds nothing: nothing to receive, no
                job running here, and (where the backend can tell) no message waiting,
                in flight or delayed, so pending retries run first.
        """
        backend = self.app.backend
        if not backend.capabilities.pull:
            raise ConfigurationError(f"{backend!r} is push-only: run its function shim, not a worker")
        self._until_empty = until_empty
        restore = self._install_signals() if self.handle_signals else None
        per_thread = [WorkerStats() for _ in range(self.concurrency)]
        self._busy = [False] * self.concurrency
        consumers = [threading.Thread(target=self._consume, args=(n, backend, stats),
                                      name=f"cloudqueue-worker-{n}", daemon=True)
                     for n, stats in enumerate(per_thread)]
        beat = None
        if backend.capabilities.visibility:
            beat = threading.Thread(target=self._heartbeat, args=(backend,),
                                    name="cloudqueue-heartbeat", daemon=True)
            beat.start()
        log.info("worker for app %r on %r: concurrency %d", self.app.name, backend, self.concurrency)
        try:
            for thread in consumers:
                thread.start()
            for thread in consumers:
                while thread.is_alive():  # a timed join keeps the main thread free for signals
                    thread.join(0.2)
        finally:
            self._stop.set()
            for thread in consumers:
                thread.join()
            self._give_back(backend)
            self._stop_loop()
            if restore is not None:
                restore()
            if beat is not None:
                beat.join(timeout=5)
            for stats in per_thread:
                self.stats.add(stats)
            log.info("worker stopped: %s", self.stats)
        return self.stats

    # -- one consumer ------------------------------------------------------------------------
    def _consume(self, slot: int, backend: Backend, stats: WorkerStats) -> None:
        # No lock on this path: the dict and list updates below are atomic in CPython, and
        # a lock taken per job makes the consumers queue behind each other.
        dispatcher = self.app.dispatcher
        stop = self._stop
        held, busy = self._held, self._busy
        while not stop.is_set():
            try:
                batch = backend.receive(max_messages=self.prefetch, wait=self.poll_wait)
            except Exception:  # the queue is unreachable: wait, then try again
                log.exception("receive failed; retrying in %s", self.poll_wait)
                stop.wait(self.poll_wait.total_seconds())
                continue
            if not batch:
                # in flight counts what another consumer received but has not yet taken up
                if self._until_empty and self._all_idle() and _is_empty(backend):
                    stop.set()
                continue
            busy[slot] = True
            for delivery in batch:
                held[id(delivery)] = delivery
            try:
                for delivery in batch:
                    if stop.is_set():
                        # given back once every consumer has stopped polling, so no
                        # consumer of ours takes it again (each take counts an attempt)
                        self._unstarted.append(delivery)
                        continue
                    prepared = dispatcher.prepare(delivery)
                    if isinstance(prepared, Task):
                        prepared = self._run(prepared)
                    self._settle(backend, prepared, stats)
                    held.pop(id(delivery), None)
            finally:
                busy[slot] = False

    def _all_idle(self) -> bool:
        return not any(self._busy)

    def _run(self, task: Task) -> Result:
        dispatcher = self.app.dispatcher
        if not task.job.is_async:
            return dispatcher.run(task)
        import asyncio

        future = asyncio.run_coroutine_threadsafe(dispatcher.run_async(task), self._event_loop())
        try:
            return future.result()
        except Exception as exc:  # run_async classifies job errors; this is the loop failing
            return dispatcher.failed(task, exc)

    def _settle(self, backend: Backend, result: Result, stats: WorkerStats) -> None:
        try:
            self.app.dispatcher.settle(backend, result)
        except Exception:  # the message returns after its visibility timeout
            log.exception("could not settle job %s (%s); the queue will deliver it again",
                          result.job_id, result.outcome.value)
            return
        counter = _COUNTER[result.outcome]
        setattr(stats, counter, getattr(stats, counter) + 1)

    def _give_back(self, backend: Backend) -> None:
        for delivery in self._unstarted:
            try:
                backend.release(delivery)
                self.stats.released += 1
            except Exception:  # it comes back after its visibility timeout
                log.warning("could not release %s", delivery.message_id, exc_info=True)
        self._unstarted.clear()

    # -- around the consumers ------------------------------------------------------------------
    def _heartbeat(self, backend: Backend) -> None:
        while not self._stop.wait(self.heartbeat.total_seconds()):
            for delivery in list(self._held.values()):
                try:
                    backend.extend_visibility(delivery, self.visibility_timeout)
                except Exception:  # best effort; the job keeps running
                    log.warning("could not extend visibility of %s", delivery.message_id,
                                exc_info=True)

    def _event_loop(self) -> AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                import asyncio

                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="cloudqueue-async", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def _stop_loop(self) -> None:
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout=5)
            self._loop.close()
            self._loop = None

    def _install_signals(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.warning("received %s: finishing running jobs, then stopping",
                        signal.Signals(signum).name)
            self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return restore


def _is_empty(backend: Backend) -> bool:
    stats = backend.stats()
    return not any((stats.waiting, stats.in_flight, stats.delayed))
