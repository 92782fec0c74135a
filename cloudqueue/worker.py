"""A long-running consumer for pull backends.

Sync jobs run on a thread pool, async jobs on one event loop thread; ``concurrency``
bounds how many run at once, and the worker receives only as many messages as it has
free slots, so nothing waits in a local buffer. On SIGTERM or SIGINT it stops
receiving, gives back at once anything it received but had not started, and finishes
what it started.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from .backends.base import Backend, Delivery
from .dispatch import Outcome, Result, Task

if TYPE_CHECKING:
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


class Worker:
    """Consume an app's backend until stopped.

    Args:
        app: the app whose jobs run.
        concurrency: jobs running at once (threads for sync jobs; async jobs share a loop).
        poll_wait: how long one receive call may wait for messages (long polling).
        heartbeat: how often to extend the visibility of running jobs, on backends
            that can (None: a third of ``visibility_timeout``).
        visibility_timeout: how long each extension hides a running job's message.
        handle_signals: stop gracefully on SIGTERM/SIGINT (main thread only).
    """

    def __init__(self, app: App, *, concurrency: int = 8,
                 poll_wait: timedelta = timedelta(seconds=1),
                 visibility_timeout: timedelta = timedelta(seconds=30),
                 heartbeat: timedelta | None = None, handle_signals: bool = True) -> None:
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigurationError(f"worker concurrency must be an int >= 1, got {concurrency!r}")
        self.app = app
        self.concurrency = concurrency
        self.poll_wait = poll_wait
        self.visibility_timeout = visibility_timeout
        self.heartbeat = heartbeat or visibility_timeout / 3
        self.handle_signals = handle_signals
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._running: dict[int, Delivery] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to stop: no new receives; running jobs finish."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

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
        restore = self._install_signals() if self.handle_signals else None
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cloudqueue-job")
        beat = None
        if backend.capabilities.visibility:
            beat = threading.Thread(target=self._heartbeat, name="cloudqueue-heartbeat", daemon=True)
            beat.start()
        log.info("worker for app %r on %r: concurrency %d", self.app.name, backend, self.concurrency)
        try:
            while not self._stop.is_set():
                free = self._wait_for_slot()
                if free == 0:
                    continue
                batch = backend.receive(max_messages=min(free, 10), wait=self.poll_wait)
                if not batch:
                    if until_empty and not self._running and _is_empty(backend):
                        break
                    continue
                for delivery in batch:
                    if self._stop.is_set():
                        backend.release(delivery)
                        self.stats.released += 1
                    else:
                        self._start(delivery, pool)
        finally:
            self._stop.set()
            pool.shutdown(wait=True)
            self._stop_loop()
            if restore is not None:
                restore()
            if beat is not None:
                beat.join(timeout=5)
            log.info("worker stopped: %s", self.stats)
        return self.stats

    # -- internals -----------------------------------------------------------------------
    def _wait_for_slot(self) -> int:
        with self._cond:
            while len(self._running) >= self.concurrency and not self._stop.is_set():
                self._cond.wait(0.5)
            return 0 if self._stop.is_set() else self.concurrency - len(self._running)

    def _start(self, delivery: Delivery, pool: ThreadPoolExecutor) -> None:
        dispatcher = self.app.dispatcher
        prepared = dispatcher.prepare(delivery)
        if isinstance(prepared, Result):
            self._settle(prepared)
            return
        key = id(delivery)
        with self._cond:
            self._running[key] = delivery
        future: Future[Result] | Any
        if prepared.job.is_async:
            future = asyncio.run_coroutine_threadsafe(dispatcher.run_async(prepared), self._event_loop())
        else:
            future = pool.submit(dispatcher.run, prepared)
        future.add_done_callback(self._done_callback(key, prepared))

    def _done_callback(self, key: int, task: Task) -> Callable[[Any], None]:
        def done(future: Any) -> None:
            try:
                result = future.result()
            except BaseException as exc:
                log.exception("job %s crashed the runner; it comes back after its visibility "
                              "timeout", task.job.name)
                result = self.app.dispatcher.failed(task, exc) if isinstance(exc, Exception) else None
            try:
                if result is not None:
                    self._settle(result)
            finally:
                with self._cond:
                    self._running.pop(key, None)
                    self._cond.notify_all()
        return done

    def _settle(self, result: Result) -> None:
        try:
            self.app.dispatcher.settle(self.app.backend, result)
        except Exception:
            log.exception("could not settle job %s (%s); the queue will deliver it again",
                          result.job_id, result.outcome.value)
            return
        if result.outcome is Outcome.ACK:
            self.stats.succeeded += 1
        elif result.outcome is Outcome.RETRY:
            self.stats.retried += 1
        elif result.outcome is Outcome.HOP:
            self.stats.hopped += 1
        else:
            self.stats.dead_lettered += 1

    def _heartbeat(self) -> None:
        backend = self.app.backend
        while not self._stop.wait(self.heartbeat.total_seconds()):
            with self._cond:
                running = list(self._running.values())
            for delivery in running:
                try:
                    backend.extend_visibility(delivery, self.visibility_timeout)
                except Exception:
                    log.warning("could not extend visibility of %s", delivery.message_id,
                                exc_info=True)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="cloudqueue-async", daemon=True)
            thread.start()
            self._loop, self._loop_thread = loop, thread
        return self._loop

    def _stop_loop(self) -> None:
        # wait for async jobs still running, then stop the loop
        with self._cond:
            while self._running:
                self._cond.wait(0.5)
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
