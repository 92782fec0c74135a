"""A long-running consumer for pull backends.

``concurrency`` consumer threads each loop: receive a message, run its job, settle it,
all through the app's dispatcher (the same path as ``drain`` and the function shims).
A thread receives only when it is free (``prefetch`` messages at a time, 1 by default),
so nothing waits in a local buffer while the queue could give it to another consumer.
Async jobs run on one event loop thread; the consumer that took the message waits for it.

The heartbeat keeps every held message hidden: it follows the visibility the receive
actually used (the worker's ``visibility_timeout``, else the queue's own setting) and
extends each message when a quarter of its window has passed, so it beats at least three
times per window. It keeps beating after a stop until the last running job has settled.
With an idempotency store, each beat also extends the store claim of the running job by
the same window, so a long job's claim never lapses while it runs.

On SIGTERM or SIGINT the worker stops receiving, finishes what it started, then gives
back at once anything it received but had not started. A job that raises anything,
``SystemExit`` included, fails by its retry policy; ``KeyboardInterrupt`` from a job
gives its message back and stops the worker. No consumer thread dies of a job.

With several queues (``queues=["critical", "default", "bulk"]``) each consumer picks the
queue of every receive (``_Picker``): ``strict`` asks them in order and takes from the
first that has due work; ``weighted`` shares receives by ``weights`` with smooth weighted
round robin. The heartbeat, stale settles and the give-back on stop follow each
message's own queue. With one queue the loop is the same as ever: no pick per receive.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, StaleDelivery
from .backends.base import Backend, Delivery
from .dispatch import Outcome, Result, Task

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from ._store_guard import Idempotency
    from .app import App
    from .limits import Limiter, LimitStore

log = logging.getLogger("cloudqueue.worker")

#: the window assumed when neither the worker nor the receive says one (Pub/Sub's
#: shortest ack deadline, so a guess errs towards beating too often)
_UNKNOWN_WINDOW = timedelta(seconds=10)
_NO_WAIT = timedelta(0)
STRATEGIES = ("strict", "weighted")


@dataclass
class WorkerStats:
    """Counts since the worker started."""

    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    hopped: int = 0
    released: int = 0
    skipped: int = 0
    deferred: int = 0
    not_settled: int = 0

    def add(self, other: WorkerStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_COUNTER = {Outcome.ACK: "succeeded", Outcome.RETRY: "retried", Outcome.DEAD_LETTER: "dead_lettered",
            Outcome.HOP: "hopped", Outcome.SKIP: "skipped", Outcome.DEFER: "deferred",
            Outcome.RELEASE: "released"}


class _Held:
    """A received, unsettled delivery, its queue, and when the heartbeat last extended it."""

    __slots__ = ("backend", "delivery", "extended")

    def __init__(self, delivery: Delivery, extended: float, backend: Backend) -> None:
        self.delivery = delivery
        self.extended = extended
        self.backend = backend


class _Picker:
    """Which queue one consumer receives from next (one per consumer thread: no lock).

    ``strict`` (``weights`` None) asks the queues in their order, each without waiting,
    and takes from the first that has due work: a lower queue is asked only after every
    higher one came back empty.

    ``weighted`` is smooth weighted round robin (the scheme nginx uses for upstreams):
    before each receive every queue's credit grows by its weight, the queues are asked
    in order of credit, and the one that delivers pays the sum of the weights. With
    weights 3:2:1 and every queue busy the receives go a b a c b a, repeating: each
    queue gets its share in every cycle of six, spread out rather than in bursts, so
    none starves and none waits longer than a cycle. A queue found empty sits that
    round out (its banked credit goes back to the others by weight, and its weight is
    not in the sum paid), so it cannot bank a burst while idle; the next queue in
    credit order is asked instead, so no receive is wasted on an empty queue. A receive
    of several messages (``prefetch``) counts as that many turns: the shares are shares
    of messages.

    When every queue is empty the consumer long-polls the one first in line for the
    worker's ``poll_wait``, so an idle worker waits rather than spins; work arriving
    meanwhile on another queue waits at most that long.
    """

    __slots__ = ("backends", "credit", "total", "weights")

    def __init__(self, backends: Sequence[Backend], weights: Sequence[int] | None) -> None:
        self.backends = list(backends)
        self.weights = list(weights) if weights is not None else None
        self.credit = [0.0] * len(self.backends)
        self.total = sum(self.weights) if self.weights is not None else 0

    def order(self) -> list[int]:
        """The queues' indexes in the order to ask them this time."""
        if self.weights is None:
            return list(range(len(self.backends)))
        ahead = [credit + weight for credit, weight in zip(self.credit, self.weights, strict=True)]
        return sorted(range(len(ahead)), key=lambda index: (-ahead[index], index))

    def took(self, index: int, empty: Sequence[int] = (), count: int = 1) -> None:
        """Queue ``index`` delivered ``count`` messages: as ``count`` turns, every credit but
        the empty ones' grows by its weight, and it pays the sum of those weights."""
        if self.weights is None:
            return
        credit, weights = self.credit, self.weights
        paid = self.total
        if empty:
            # an empty queue keeps no credit: what it banked goes back to the others by
            # weight, so the credits still sum to zero and the busy queues' shares hold
            paid -= sum(weights[position] for position in empty)
            banked = sum(max(credit[position], 0.0) for position in empty)
            for position in empty:
                credit[position] = min(credit[position], 0.0)
            if banked:
                for position, weight in enumerate(weights):
                    if position not in empty:
                        credit[position] += banked * weight / paid
        for position, weight in enumerate(weights):
            if position not in empty:
                credit[position] += weight * count
        credit[index] -= paid * count

    def receive(self, max_messages: int, wait: timedelta,
                visibility: timedelta | None) -> tuple[Backend, list[Delivery]]:
        order = self.order()
        backends = self.backends
        for asked, index in enumerate(order):
            batch = backends[index].receive(max_messages=max_messages, wait=_NO_WAIT,
                                            visibility=visibility)
            if batch:
                self.took(index, order[:asked], len(batch))
                return backends[index], batch
        first = order[0]
        if wait <= _NO_WAIT:
            return backends[first], []
        batch = backends[first].receive(max_messages=max_messages, wait=wait, visibility=visibility)
        if batch:
            self.took(first, (), len(batch))
        return backends[first], batch


class Worker:
    """Consume an app's queues until stopped.

    Args:
        app: the app whose jobs run.
        queues: the app queues to consume, highest priority first (default: every queue
            of the app, in declared order).
        strategy: with several queues, ``"strict"`` (never take from a lower queue while
            a higher one has due work) or ``"weighted"`` (share by ``weights``; nothing
            starves). See ``_Picker``.
        weights: for ``"weighted"``: queue name -> positive int (default: the queues in
            order weigh n, n-1, ..., 1).
        concurrency: jobs running at once (one consumer thread each).
        poll_wait: how long one receive call may wait for messages (long polling).
        prefetch: messages one consumer takes per receive (more saves calls on remote
            queues; the extra ones wait, hidden and kept alive by the heartbeat).
        visibility_timeout: hide each received message this long (None: the queue's own
            setting); the heartbeat extends it by this much at a time.
        heartbeat: the longest time between two extensions of a message (None: a quarter
            of its visibility window; a longer value is shortened to that).
        handle_signals: stop gracefully on SIGTERM/SIGINT (main thread only).
        limit_store: where the jobs' rate and concurrency limits keep their state
            (default: in this process; see ``cloudqueue.limits``).
    """

    def __init__(self, app: App, *, concurrency: int = 8,
                 poll_wait: timedelta = timedelta(seconds=1), prefetch: int = 1,
                 visibility_timeout: timedelta | None = None,
                 heartbeat: timedelta | None = None, handle_signals: bool = True,
                 queues: Sequence[str] | None = None, strategy: str = "strict",
                 weights: Mapping[str, int] | None = None, limit_store: LimitStore | None = None) -> None:
        if type(concurrency) is not int or concurrency < 1:
            raise ConfigurationError(f"worker concurrency must be an int >= 1, got {concurrency!r}")
        if type(prefetch) is not int or prefetch < 1:
            raise ConfigurationError(f"worker prefetch must be an int >= 1, got {prefetch!r}")
        if visibility_timeout is not None and visibility_timeout <= timedelta(0):
            raise ConfigurationError(f"worker visibility_timeout must be positive, got {visibility_timeout}")
        if heartbeat is not None and heartbeat <= timedelta(0):
            raise ConfigurationError(f"worker heartbeat must be positive, got {heartbeat}")
        self.queues = app.queues_in(queues)
        self.strategy = strategy
        self.weights = _weights(self.queues, strategy, weights)
        self.app = app
        self.concurrency = concurrency
        self.poll_wait = poll_wait
        self.prefetch = prefetch
        self.visibility_timeout = visibility_timeout
        self.heartbeat = heartbeat
        self.handle_signals = handle_signals
        self.limit_store = limit_store
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._beat_stop = threading.Event()
        self._beat_wake = threading.Event()  # set when new messages are due before its wake-up
        self._beat_at = 0.0  # when the heartbeat wakes next (monotonic)
        self._steps: dict[timedelta, float] = {}  # visibility window -> seconds between beats
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}  # received and not yet settled, for the heartbeat
        self._unstarted: list[tuple[Backend, Delivery]] = []  # received after stop: given back at the end
        self._backends: list[Backend] = []
        self._busy: list[bool] = []  # per consumer: running jobs now
        self._until_empty = False
        self._loop: AbstractEventLoop | None = None
        self._limiter: Limiter | None = None
        self._loop_thread: threading.Thread | None = None

    # -- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the worker to stop: no new receives; running jobs finish."""
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        """Cut short the receives waiting for messages, where the backend can (in process)."""
        for backend in self._backends:
            wake = getattr(backend, "wake", None)
            if wake is not None:
                wake()

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
        backends = self._backends = [self.app.queue(name) for name in self.queues]
        for name, backend in zip(self.queues, backends, strict=True):
            if not backend.capabilities.pull:
                raise ConfigurationError(f"queue {name!r} ({backend!r}) is push-only: run its function "
                                         "shim, not a worker")
        backend = backends[0]
        self._until_empty = until_empty
        self._beat_stop.clear()
        restore = self._install_signals() if self.handle_signals else None
        per_thread = [WorkerStats() for _ in range(self.concurrency)]
        self._busy = [False] * self.concurrency
        weights = None if self.weights is None else [self.weights[name] for name in self.queues]
        consumers = [threading.Thread(
            target=self._consume, args=(n, backend, stats,
                                        _Picker(backends, weights) if len(backends) > 1 else None),
            name=f"cloudqueue-worker-{n}", daemon=True) for n, stats in enumerate(per_thread)]
        beat = None
        beating = {id(queue) for queue in backends if queue.capabilities.visibility}
        if beating:
            beat = threading.Thread(target=self._heartbeat, args=(beating,),
                                    name="cloudqueue-heartbeat", daemon=True)
            beat.start()
        self.app.dispatcher.refresh()  # successes logged at INFO are timed and settled one by one
        if len(backends) == 1:
            log.info("worker for app %r on %r: concurrency %d", self.app.name, backend, self.concurrency)
        else:
            log.info("worker for app %r on queues %s (%s%s): concurrency %d", self.app.name,
                     ", ".join(self.queues), self.strategy,
                     "" if self.weights is None else f" {self.weights}", self.concurrency)
        try:
            for thread in consumers:
                thread.start()
            for thread in consumers:
                while thread.is_alive():  # a timed join keeps the main thread free for signals
                    thread.join(0.2)
        finally:
            self.stop()
            for thread in consumers:
                while thread.is_alive():  # running jobs finish; the heartbeat keeps them hidden
                    thread.join(0.2)
            self._give_back()
            self._beat_stop.set()
            self._beat_wake.set()
            if beat is not None:
                beat.join(timeout=30)
            self._stop_loop()
            if restore is not None:
                restore()
            for stats in per_thread:
                self.stats.add(stats)
            self.app.dispatcher.flush()  # middleware that buffers (EMF) writes what it holds
            log.info("worker stopped: %s", self.stats)
        return self.stats

    # -- one consumer ------------------------------------------------------------------------
    def _consume(self, slot: int, backend: Backend, stats: WorkerStats, picker: _Picker | None) -> None:
        # No lock on this path: the dict and list updates below are atomic in CPython, and
        # a lock taken per job makes the consumers queue behind each other.
        dispatcher = self.app.dispatcher
        handle, settle, ack_ = dispatcher.handle, dispatcher.settle, dispatcher.ack
        if any(job.limits is not None for job in self.app.jobs.values()):
            handle = self._limited()
        runner = self._run_on_loop
        ack = Outcome.ACK
        stop = self._stop
        held, busy = self._held, self._busy
        worked = False  # the last receive brought messages
        no_wait = timedelta(0)
        while not stop.is_set():
            received_at = time.monotonic()
            # until_empty: right after work, look without waiting, so the worker can tell
            # the queue is empty (and return) at once rather than after a long poll
            wait = no_wait if worked and self._until_empty else self.poll_wait
            try:
                if picker is None:
                    batch = backend.receive(max_messages=self.prefetch, wait=wait,
                                            visibility=self.visibility_timeout)
                else:  # several queues: this receive's queue, by the strategy
                    backend, batch = picker.receive(self.prefetch, wait, self.visibility_timeout)
            except Exception:  # the queue is unreachable: wait, then try again
                log.exception("receive failed; retrying in %s", self.poll_wait)
                stop.wait(self.poll_wait.total_seconds())
                continue
            worked = bool(batch)
            if not batch:
                # in flight counts what another consumer received but has not yet taken up
                if self._until_empty and self._all_idle() and \
                        all(_is_empty(queue) for queue in self._backends):
                    self.stop()
                continue
            busy[slot] = True
            for delivery in batch:
                held[id(delivery)] = _Held(delivery, received_at, backend)
            if received_at + self._step(batch[0]) < self._beat_at:
                self._beat_wake.set()  # due before the heartbeat would look again
            try:
                for delivery in batch:
                    if stop.is_set():
                        # given back once every consumer has stopped polling, so no
                        # consumer of ours takes it again
                        self._unstarted.append((backend, delivery))
                        continue
                    lease = delivery.lease_until
                    if lease is not None and backend.clock.time() >= lease:
                        # its visibility ran out before it could start (a slow receive, or it
                        # waited behind a long job): the queue may have handed it out again
                        log.warning("not starting message %s: its visibility ran out before it "
                                    "started; the queue delivers it again", delivery.message_id)
                        held.pop(id(delivery), None)
                        dispatcher.note_unrun(backend, (delivery,))
                        stats.not_settled += 1
                        continue
                    try:
                        result = handle(delivery, runner, quiet=True)
                        if result is None:  # a success nothing observes: only the ack is left
                            if ack_(backend, delivery):
                                stats.succeeded += 1
                            else:
                                stats.not_settled += 1
                            continue
                        if settle(backend, result) and result.outcome is ack:
                            stats.succeeded += 1
                        else:
                            self._count(stats, result, result.applied)
                        if result.interrupted:
                            # the outcome record said the message went back; this is the worker's part
                            log.warning("worker stopping: a job was interrupted (KeyboardInterrupt)")
                            self.stop()
                    except BaseException:  # a fault of ours, never the job's: the thread lives on
                        log.exception("could not process message %s; it comes back after its "
                                      "visibility timeout", delivery.message_id)
                    finally:
                        held.pop(id(delivery), None)
            finally:
                busy[slot] = False

    def _limited(self) -> Callable[..., Result | None]:
        """``dispatcher.handle`` behind the jobs' limits: a job over one is deferred, not run."""
        limiter = self._limiter
        if limiter is None:
            from .limits import Limiter

            with self._lock:
                if self._limiter is None:  # one limiter shared by every consumer thread
                    self._limiter = Limiter(self.app.jobs, self.limit_store, clock=self.app.clock.time)
                limiter = self._limiter
        dispatcher = self.app.dispatcher
        prepare, run, failed = dispatcher.prepare, dispatcher.run, dispatcher.failed

        def limited(delivery: Delivery, runner: Any = None, *, quiet: bool = False) -> Result | None:
            prepared = prepare(delivery)
            if type(prepared) is not Task:
                return prepared  # type: ignore[return-value]
            task: Task = prepared
            try:
                place = limiter.admit(task)
            except Exception as exc:  # Defer, or a key function that raised
                return failed(task, exc, before_run=True)
            try:
                return run(task, runner)
            finally:
                limiter.done(place)

        return limited

    @staticmethod
    def _count(stats: WorkerStats, result: Result, applied: bool) -> None:
        if not applied:
            stats.not_settled += 1
            return
        counter = _COUNTER[result.outcome]
        setattr(stats, counter, getattr(stats, counter) + 1)

    def _all_idle(self) -> bool:
        return not any(self._busy)

    def _run_on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        import asyncio

        # run_coroutine_threadsafe starts the task in a copy of this thread's context, so
        # the running job's trace context reaches the coroutine
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop()).result()

    def _give_back(self) -> None:
        unstarted, self._unstarted = self._unstarted, []
        by_queue: dict[int, tuple[Backend, list[Delivery]]] = {}
        for backend, delivery in unstarted:
            by_queue.setdefault(id(backend), (backend, []))[1].append(delivery)
        for backend, deliveries in by_queue.values():
            self.app.dispatcher.give_back(backend, deliveries)
            self.stats.released += len(deliveries)
        for _, delivery in unstarted:
            self._held.pop(id(delivery), None)

    # -- around the consumers ------------------------------------------------------------------
    def _window(self, delivery: Delivery) -> timedelta:
        """How long each extension hides ``delivery``: the visibility its receive used."""
        return self.visibility_timeout or delivery.visibility or _UNKNOWN_WINDOW

    def _step(self, delivery: Delivery) -> float:
        """The longest wait, in seconds, between two extensions of ``delivery``."""
        window = self._window(delivery)
        step = self._steps.get(window)
        if step is None:  # a few distinct windows at most: worked out once each
            step = window.total_seconds() / 4
            if self.heartbeat is not None:
                step = min(step, self.heartbeat.total_seconds())
            self._steps[window] = step
        return step

    def _heartbeat(self, beating: set[int]) -> None:
        """Extend every held message whose queue has visibility (``beating``: their ids)."""
        warned: set[str] = set()
        guard = self.app.idempotency
        while not self._beat_stop.is_set():
            self._beat_wake.clear()  # before the scan: a consumer's later set wakes the wait
            self._beat_at = float("inf")  # while scanning, every new message wakes it again
            now = time.monotonic()
            wake = now + 1.0  # with nothing held; consumers wake it when they take messages
            for entry in list(self._held.values()):
                backend = entry.backend
                if id(backend) not in beating:
                    continue
                step = self._step(entry.delivery)
                due = entry.extended + step
                if now >= due:
                    try:
                        window = self._window(entry.delivery)
                        backend.extend_visibility(entry.delivery, window)
                        entry.extended = now
                        if guard is not None:
                            self._extend_claim(guard, entry.delivery, window)
                    except StaleDelivery as exc:
                        mid = entry.delivery.message_id
                        if mid not in warned:
                            warned.add(mid)
                            log.warning("lost message %s: %s", mid, exc)
                    except Exception:  # best effort; the job keeps running
                        log.warning("could not extend visibility of %s", entry.delivery.message_id,
                                    exc_info=True)
                    due = now + step
                wake = min(wake, due)
            self._beat_at = wake
            self._beat_wake.wait(max(wake - time.monotonic(), 0.01))

    @staticmethod
    def _extend_claim(guard: Idempotency, delivery: Delivery, window: timedelta) -> None:
        """The store claim of a running job lasts as long as its message stays hidden."""
        try:
            guard.extend(delivery, window)
        except Exception:  # best effort, as the extension of the message itself
            log.warning("could not extend the store claim of %s", delivery.message_id, exc_info=True)

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


def _weights(queues: Sequence[str], strategy: str,
             weights: Mapping[str, int] | None) -> dict[str, int] | None:
    """The weight of each queue for ``weighted``; None for ``strict``.

    Raises:
        ConfigurationError: an unknown strategy, weights with ``strict``, a weight that is
            not a positive int, or one for a queue the worker does not consume.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"worker strategy must be one of {', '.join(map(repr, STRATEGIES))}, "
                                 f"got {strategy!r}")
    if strategy == "strict":
        if weights is not None:
            raise ConfigurationError("worker weights= go with strategy='weighted'; strict takes the "
                                     "queues in order and has no weights")
        return None
    if weights is None:
        return {name: len(queues) - index for index, name in enumerate(queues)}
    unknown = [name for name in weights if name not in queues]
    if unknown:
        raise ConfigurationError(f"worker weights name queue(s) {', '.join(map(repr, unknown))} that "
                                 f"this worker does not consume (its queues: {', '.join(queues)})")
    chosen: dict[str, int] = {}
    for name in queues:
        weight = weights.get(name)
        if weight is None:
            raise ConfigurationError(f"worker weights give no weight for queue {name!r}; give every "
                                     f"queue one, e.g. weights={{{', '.join(f'{q!r}: 1' for q in queues)}}}")
        if type(weight) is not int or weight < 1:
            raise ConfigurationError(f"worker weight of queue {name!r} must be an int >= 1, got {weight!r}")
        chosen[name] = weight
    return chosen


def _is_empty(backend: Backend) -> bool:
    stats = backend.stats()
    return not any((stats.waiting, stats.in_flight, stats.delayed))
