"""The application: a named set of jobs bound to one queue, or to several named queues."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import envelope
from ._errors import CloudQueueError, ConfigurationError, PayloadError, UnknownJobError, UnsupportedFeature
from .backends.base import Backend, OutgoingMessage, QueueStats
from .clock import Clock, SystemClock, format_timestamp
from .context import current_traceparent
from .dispatch import Dispatcher, Outcome, Result
from .job import Job, OrderingKey, inspect_job_function
from .lifecycle import EVENTS, Middleware, overrides
from .retry import DEFAULT_RETRY, Retry

if TYPE_CHECKING:
    from ._store_guard import Idempotency
    from .flows import Flow, Retried, Subflow
    from .limits import Concurrency, RateLimit
    from .payloads import PayloadStore
    from .schedules import Cron
    from .store import Once, Record, Store
    from .worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
#: the queue of ``backend=``, and of every job declared without ``queue=``
DEFAULT_QUEUE = "default"


_NO_WAIT = timedelta(0)

@dataclass
class DrainReport:
    """What ``App.drain`` did."""

    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    hopped: int = 0
    skipped: int = 0
    deferred: int = 0
    results: list[Result] = field(default_factory=list, repr=False)

    def add(self, result: Result) -> None:
        self.results.append(result)
        outcome = result.outcome
        if outcome is Outcome.ACK:
            self.succeeded += 1
        elif outcome is Outcome.RETRY:
            self.retried += 1
        elif outcome is Outcome.HOP:
            self.hopped += 1
        elif outcome is Outcome.DEAD_LETTER:
            self.dead_lettered += 1
        elif outcome is Outcome.SKIP:
            self.skipped += 1
        else:
            self.deferred += 1

    @property
    def processed(self) -> int:
        return len(self.results)


class App:
    """A named set of jobs on one queue, or on several named queues.

    Args:
        name: the app's name; it becomes the envelope's ``source`` (``cloudqueue://<name>``).
        backend: a URL (``"memory://"``, ``"sqs://orders?region=eu-west-1"``) or a Backend:
            the app's one queue, named ``"default"``. None reads ``$CLOUDQUEUE_URL`` and
            falls back to ``"memory://"``. A URL is opened on first use, so defining an
            app costs no SDK import.
        queues: several queues by name instead, highest priority first by convention,
            e.g. ``{"critical": URL, "default": URL, "bulk": URL}`` (URLs or Backends, each
            opened on first use). A job goes to ``@app.job(queue=...)``, else to
            ``"default"``; ``app.worker(queues=[...])`` says which to consume and in
            what order.
        retry: the default retry policy of this app's jobs.
        clock: the clock for enqueue times and delays (default: the backend's).
        middleware: ``cq.Middleware`` instances, outermost first (see ``cloudqueue.lifecycle``).
        store: an idempotency store, as a URL (``"memory://"``, ``"dynamodb://TABLE?region=..."``,
            ``"firestore://PROJECT/COLLECTION"``) or a ``cloudqueue.store.Store``: a job
            with an idempotency key (or ``once=True``) then runs at most once per key.
            None reads ``$CLOUDQUEUE_STORE_URL`` (unset: no store). A URL is opened on
            first use.
        payload_store: where payloads too large for the queue go (the claim check): a URL
            (``"s3://bucket/prefix"``, ``"gs://bucket/prefix"``, ``"memory://"``) or a
            ``cloudqueue.payloads.PayloadStore``; opened on first use. None reads
            ``$CLOUDQUEUE_PAYLOAD_STORE`` (unset: no claim check). Consumers need the
            producer's store to read those messages (see ``cloudqueue.payloads``).
        offload_above: the largest message, in bytes, sent with its payload inline; a
            larger one goes through ``payload_store``. Default: the backend's own limit,
            so only messages that would not fit are offloaded.
    """

    def __init__(self, name: str, backend: str | Backend | None = None, *,
                 retry: Retry | None = None, clock: Clock | None = None,
                 middleware: Sequence[Middleware] = (),
                 queues: Mapping[str, str | Backend] | None = None,
                 payload_store: str | PayloadStore | None = None,
                 offload_above: int | None = None,
                 store: str | Store | None = None) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError("cq.App needs a non-empty name, e.g. cq.App('shop')")
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigurationError(f"App retry must be a cq.Retry, got {retry!r}")
        if backend is not None and not isinstance(backend, (str, Backend)):
            raise ConfigurationError(
                f"App backend must be a URL string or a Backend, got {type(backend).__name__}")
        self.name = name
        self.retry = retry or DEFAULT_RETRY
        if queues is None:
            specs: dict[str, str | Backend] = {
                DEFAULT_QUEUE: backend or os.environ.get("CLOUDQUEUE_URL") or "memory://"}
        else:
            if backend is not None:
                raise ConfigurationError(
                    f"app {name!r}: pass backend= (one queue) or queues= (several), not both; "
                    f"put that backend in queues, e.g. queues={{'default': {backend!r}, ...}}")
            specs = _queue_specs(name, queues)
        #: queue name -> URL or Backend, in declared order (the default priority order)
        self._specs = specs
        #: the queue ``backend`` means: "default", else the first declared
        self._primary = DEFAULT_QUEUE if DEFAULT_QUEUE in specs else next(iter(specs))
        self._backends: dict[str, Backend] = {
            queue: spec for queue, spec in specs.items() if isinstance(spec, Backend)}
        self._multi = len(specs) > 1
        self._backend_spec: str | Backend = specs[self._primary]
        self._backend: Backend | None = self._backends.get(self._primary)
        self._clock = clock
        self._jobs: dict[str, Job[Any, Any]] = {}
        for item in middleware:
            if not isinstance(item, Middleware):
                raise ConfigurationError(
                    f"App middleware must be cq.Middleware instances, got {item!r}; "
                    "subclass cq.Middleware and pass an instance, e.g. middleware=[Timing()]")
        self._middleware: tuple[Middleware, ...] = tuple(middleware)
        self._listeners: dict[str, list[Callable[[Result], Any]]] = {}
        self._idempotency = _idempotency(self, store if store is not None
                                         else os.environ.get("CLOUDQUEUE_STORE_URL") or None)
        self._payload_spec, self._payloads, self.offload_above = _payload_settings(
            name, payload_store or os.environ.get("CLOUDQUEUE_PAYLOAD_STORE") or None, offload_above)
        self.dispatcher = Dispatcher(self)
        self.dispatcher.hooks_changed()

    # -- wiring ------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The default queue's backend (with ``queues=`` and no "default": the first one's)."""
        backend = self._backend
        if backend is None:
            backend = self._open(self._primary)
        return backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._swap_queue(self._primary, backend, backend)

    def _swap_queue(self, name: str, spec: str | Backend,
                    opened: Backend | None) -> tuple[str | Backend, Backend | None]:
        """Make queue ``name`` ``spec`` (already open as ``opened``, or None); return what it was."""
        previous = self._specs[name], self._backends.get(name)
        self._specs[name] = spec
        if opened is None:
            self._backends.pop(name, None)
        else:
            self._backends[name] = opened
        if name == self._primary:
            self._backend_spec, self._backend = spec, opened
        return previous

    @property
    def backend_url(self) -> str | None:
        """The default queue's URL (None when it was given as a Backend)."""
        return self._backend_spec if isinstance(self._backend_spec, str) else None

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The app's queues, in the order they were declared (``("default",)`` for ``backend=``)."""
        return tuple(self._specs)

    @property
    def default_queue(self) -> str:
        """The queue ``backend`` names: "default", else the first declared."""
        return self._primary

    def queue(self, name: str) -> Backend:
        """The backend of queue ``name``, opened on first use.

        Raises:
            ConfigurationError: the app has no such queue (with the names it has).
        """
        backend = self._backends.get(name)
        if backend is None:
            backend = self._open(self.check_queue(name))
        return backend

    def queue_url(self, name: str) -> str | None:
        """The URL queue ``name`` was declared with (None when given as a Backend)."""
        spec = self._specs[self.check_queue(name)]
        return spec if isinstance(spec, str) else None

    def check_queue(self, name: str, job: str | None = None) -> str:
        """``name`` when it is one of the app's queues.

        Raises:
            ConfigurationError: naming the job (if any), the queue, the app's queues and the fix.
        """
        if name in self._specs:
            return name
        import difflib

        close = difflib.get_close_matches(str(name), self._specs, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        who = f"job {job!r}: " if job else ""
        raise ConfigurationError(
            f"{who}app {self.name!r} has no queue {name!r}; {hint}its queues: "
            f"{', '.join(self._specs)} (declare more with cq.App(..., queues={{name: URL, ...}}))")

    def queues_in(self, queues: Sequence[str] | None) -> list[str]:
        """The named queues, checked, in the given order (None: every queue, as declared).

        Raises:
            ConfigurationError: an unknown or repeated name, or an empty list.
        """
        if queues is None:
            return list(self._specs)
        if isinstance(queues, str):
            raise ConfigurationError(f"queues= takes a list of names, e.g. [{queues!r}], not a string")
        names = [self.check_queue(name) for name in queues]
        if not names:
            raise ConfigurationError(f"queues= is empty; name at least one of: {', '.join(self._specs)}")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"queues= names a queue twice: {names}")
        return names

    def _open(self, name: str) -> Backend:
        spec = self._specs[name]
        if isinstance(spec, str):
            from .backends import from_url

            backend = from_url(spec)
        else:
            backend = spec
        self._backends[name] = backend
        if name == self._primary:
            self._backend, self._backend_spec = backend, spec
        return backend

    @property
    def clock(self) -> Clock:
        return self._clock if self._clock is not None else self.backend.clock

    @property
    def jobs(self) -> Mapping[str, Job[Any, Any]]:
        return self._jobs

    # -- the idempotency store ---------------------------------------------------------
    @property
    def idempotency(self) -> Idempotency | None:
        """The store step of this app's runs (None without ``store=``)."""
        return self._idempotency

    @property
    def store(self) -> Store | None:
        """The idempotency store (opened on first use), or None."""
        return self._idempotency.store if self._idempotency is not None else None

    def store_record(self, *, idempotency_key: str | None = None, job_id: str | None = None) -> Record | None:
        """Where a key (or a job id) stands in the store: ``status``, ``runs``, ``result``.

        Raises:
            ConfigurationError: the app has no store.
        """
        if self._idempotency is None:
            raise ConfigurationError(f"app {self.name!r} has no store; pass cq.App(..., store='memory://')")
        return self._idempotency.record(idempotency_key=idempotency_key, job_id=job_id)

    # -- flows -------------------------------------------------------------------------
    def flow(self, parent: OutgoingMessage, children: Sequence[OutgoingMessage | Subflow], *,
             on_child_failure: str = "fail", flow_id: str | None = None, ttl: timedelta | None = None) -> str:
        """Send ``children`` now and ``parent`` once they finished; the flow id (see ``cloudqueue.flows``)."""
        from . import flows

        return flows.start(self, parent, children, on_child_failure=on_child_failure, flow_id=flow_id,
                           ttl=flows.DEFAULT_TTL if ttl is None else ttl)

    def get_flow(self, flow_id: str) -> Flow:
        """A flow's state: ``status``, ``children`` (with results), ``reason``."""
        from .flows import get

        return get(self, flow_id)

    def list_flows(self, *, status: str | None = None, limit: int = 50) -> list[Flow]:
        """The app's flows in its store, newest first (see ``cloudqueue.flows.list_flows``)."""
        from .flows import list_flows

        return list_flows(self, status=status, limit=limit)

    def retry_flow(self, flow_id: str) -> Retried:
        """Send a failed flow's failed jobs again: their dead letters are redriven (see
        ``cloudqueue.flows.retry``)."""
        from .flows import retry

        return retry(self, flow_id)

    # -- the claim check -----------------------------------------------------------------
    @property
    def has_payload_store(self) -> bool:
        return self._payload_spec is not None

    @property
    def payload_store_url(self) -> str | None:
        """The claim-check store's URL as the app was given it (a store object's own
        ``url``), without opening it; None when the app has no payload store."""
        spec = self._payload_spec
        if spec is None or isinstance(spec, str):
            return spec
        return spec.url or None

    @property
    def payload_store(self) -> PayloadStore | None:
        """The claim-check store (opened on first use), or None when the app has none."""
        if self._payloads is None and self._payload_spec is not None:
            from .payloads import from_url as open_store

            assert isinstance(self._payload_spec, str)
            self._payloads = open_store(self._payload_spec)
        return self._payloads

    def _offload(self, job: Job[Any, Any], job_id: str, now: datetime | str, data_json: bytes,
                 key: str | None, not_before: datetime | None, traceparent: str | None) -> bytes:
        """Write the payload to the payload store; the version 2 envelope pointing at it."""
        from .payloads import offload

        store = self.payload_store
        assert store is not None
        try:
            ref = offload(store, job_id, data_json)
        except CloudQueueError:
            raise
        except Exception as exc:  # a store's own bug or an SDK error it did not translate
            from ._errors import BackendError

            raise BackendError(f"job {job.name!r}: could not write the payload to {store.url}: "
                               f"{type(exc).__name__}: {exc}") from exc
        return envelope.encode_reference(job_id=job_id, app=self.name, job_type=job.name, time=now,
                                         data_ref=ref, key=key, not_before=not_before,
                                         traceparent=traceparent)

    # -- middleware and events -----------------------------------------------------------
    @property
    def middleware(self) -> tuple[Middleware, ...]:
        return self._middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Add a middleware, innermost of those already there."""
        if not isinstance(middleware, Middleware):
            raise ConfigurationError(f"add_middleware needs a cq.Middleware instance, got {middleware!r}")
        self._middleware = (*self._middleware, middleware)
        self.dispatcher.hooks_changed()

    def on(self, event: str, callback: Callable[[Result], Any]) -> Callable[[Result], Any]:
        """Call ``callback(result)`` on ``event``: completed, failed, retrying, dead_lettered
        or stalled (``cloudqueue.lifecycle.EVENTS`` says when each fires).

        A callback runs on the consumer's thread after the outcome was applied; one that
        raises is logged and ignored. Returns ``callback``.
        """
        if event not in EVENTS:
            import difflib

            close = difflib.get_close_matches(event, EVENTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"unknown event {event!r}{hint} (events: {', '.join(EVENTS)})")
        if not callable(callback):
            raise ConfigurationError(f"app.on({event!r}, ...) needs a function, got {callback!r}")
        self._listeners.setdefault(event, []).append(callback)
        self.dispatcher.hooks_changed()
        return callback

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    def emit(self, event: str, result: Result) -> None:
        """Call the callbacks of ``event`` (each in a try/except that logs)."""
        for callback in self._listeners.get(event, ()):
            try:
                callback(result)
            except Exception:
                import logging

                logging.getLogger("cloudqueue").exception("an app.on(%r) callback raised; ignored", event)

    # -- registering -------------------------------------------------------------------
    @overload
    def job(self, func: F, /) -> Job[Any, Any]: ...

    @overload
    def job(self, func: None = None, /, *, name: str | None = None, retry: Retry | None = None,
            ordering_key: OrderingKey = None, queue: str | None = None,
            once: bool | Once | None = None, schedule: Cron | Sequence[Cron] | None = None,
            rate_limit: str | RateLimit | None = None,
            concurrency: int | Concurrency | None = None) -> Callable[[F], Job[Any, Any]]: ...

    def job(self, func: F | None = None, /, *, name: str | None = None, retry: Retry | None = None,
            ordering_key: OrderingKey = None, queue: str | None = None,
            once: bool | Once | None = None, schedule: Cron | Sequence[Cron] | None = None,
            rate_limit: str | RateLimit | None = None,
            concurrency: int | Concurrency | None = None) -> Job[Any, Any] | Callable[[F], Job[Any, Any]]:
        """Register a job: ``@app.job`` or ``@app.job(name=..., retry=..., ordering_key=...)``.

        Args:
            name: the job type on the wire (default: the function's name).
            retry: attempts and backoff (default: the app's).
            ordering_key: a FIFO group for every enqueue: a string, or a function of the
                payload returning one (needs a FIFO backend).
            queue: the app queue its messages go to (default: "default"); an enqueue's
                ``queue=`` overrides it per message.
            once: with the app's store, run at most once per idempotency key, else per job
                id (``True``, or ``cq.Once(ttl=..., keep_result=...)``). The default guards
                enqueues that carry a key (a schedule's slots carry one); ``False`` never
                guards the job.
            schedule: a ``cq.Cron`` (or a list): slots the scheduler or the cloud enqueues
                (see ``cloudqueue.schedules``); each schedule's payload is validated here.
            rate_limit: ``"N/s"``, ``"N/m"``, ``"N/h"`` or a ``cq.RateLimit`` (per key).
            concurrency: most runs at once, an int or a ``cq.Concurrency`` (per key); both
                limits are enforced by the worker (see ``cloudqueue.limits``).

        Raises:
            ConfigurationError: a duplicate name, a missing annotation, a bad retry setting,
                a queue the app does not have.
        """

        def register(fn: F) -> Job[Any, Any]:
            job_name = name or getattr(fn, "__name__", None)
            if not job_name or not isinstance(job_name, str):
                raise ConfigurationError(f"cannot name job {fn!r}; pass @app.job(name='...')")
            if job_name in self._jobs:
                raise ConfigurationError(
                    f"job {job_name!r} is already registered in app {self.name!r} (by "
                    f"{_where(self._jobs[job_name].func)}); give one of them another name= ")
            if retry is not None and not isinstance(retry, Retry):
                raise ConfigurationError(
                    f"job {job_name!r}: retry must be a cq.Retry, got {retry!r}; "
                    "write retry=cq.Retry(attempts=5)")
            if ordering_key is not None and not (isinstance(ordering_key, str) or callable(ordering_key)):
                raise ConfigurationError(
                    f"job {job_name!r}: ordering_key must be a string or a function of the payload")
            job_queue = self._job_queue(job_name, queue)
            policy = _once(self, job_name, once)
            payload_type, codec, takes_ctx = inspect_job_function(fn, job_name)
            schedules: tuple[Cron, ...] = ()
            if schedule is not None:
                from .schedules import schedules_of

                schedules = schedules_of(job_name, schedule)
            limits = None
            if rate_limit is not None or concurrency is not None:
                from .limits import JobLimits

                limits = JobLimits.build(job_name, rate_limit, concurrency)
            registered: Job[Any, Any] = Job(self, fn, name=job_name, retry=retry or self.retry,
                                            payload_type=payload_type, codec=codec,
                                            takes_context=takes_ctx, ordering_key=ordering_key,
                                            queue=job_queue, schedules=schedules, limits=limits)
            registered.once = policy
            for item in schedules:  # a schedule's payload fails here, not at 3 a.m.
                try:
                    registered.validate(item.payload)
                except PayloadError as exc:
                    raise ConfigurationError(f"job {job_name!r}: the payload of schedule "
                                             f"cq.Cron({item.expression!r}) does not validate: {exc}") from None
            self._jobs[job_name] = registered
            self.dispatcher.jobs_changed()
            return registered

        if func is not None:
            return register(func)
        return register

    def _job_queue(self, job: str, queue: str | None) -> str:
        """The queue a job declared with ``queue=`` goes to, checked against the app's."""
        if queue is None:
            if DEFAULT_QUEUE in self._specs:
                return DEFAULT_QUEUE
            raise ConfigurationError(
                f"job {job!r} has no queue= and app {self.name!r} has no {DEFAULT_QUEUE!r} queue "
                f"(its queues: {', '.join(self._specs)}); write @app.job(queue="
                f"{next(iter(self._specs))!r}) or add a {DEFAULT_QUEUE!r} queue to queues=")
        if not isinstance(queue, str):
            raise ConfigurationError(f"job {job!r}: queue= must be a queue name, got {queue!r}")
        return self.check_queue(queue, job)

    def get_job(self, name: str) -> Job[Any, Any]:
        """The job registered under ``name``.

        Raises:
            UnknownJobError: with the names this app does know.
        """
        try:
            return self._jobs[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, self._jobs, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownJobError(f"app {self.name!r} has no job {name!r}{hint} "
                                  f"(jobs: {', '.join(sorted(self._jobs)) or 'none'})") from None

    # -- enqueueing --------------------------------------------------------------------
    def enqueue(self, name: str, payload: Any, *, delay: timedelta | None = None,
                at: datetime | None = None, idempotency_key: str | None = None,
                ordering_key: str | None = None, traceparent: str | None = None,
                queue: str | None = None, priority: int | None = None) -> str:
        """Enqueue a job by name; ``payload`` (e.g. a dict) is validated against its model."""
        return self.get_job(name).enqueue(payload, delay=delay, at=at, idempotency_key=idempotency_key,
                                          ordering_key=ordering_key, traceparent=traceparent,
                                          queue=queue, priority=priority)

    def _build(self, job: Job[Any, Any], payload: Any, delay: timedelta | None = None,
               at: datetime | None = None, idempotency_key: str | None = None,
               ordering_key: str | None = None, traceparent: str | None = None,
               queue: str | None = None, priority: int | None = None) -> OutgoingMessage:
        """One outgoing message: validate, schedule, route, name, encode, check the size.

        Each step is one method below, so a new enqueue option touches one of them. The
        checks are the destination queue's: its delay cap, ordering, size and priority.
        """
        value = job.validate(payload)
        if queue is None:
            queue = job.queue
            # one queue: the default, already at hand; several: the job's, by name
            backend = (self._backends.get(queue) if self._multi else self._backend) or self.queue(queue)
        else:
            backend = self._backends.get(queue) or self.queue(self.check_queue(queue, job.name))
        caps = backend.capabilities
        if priority is not None:
            _check_priority(job, queue, backend, priority)
        clock = self._clock or backend.clock
        now: datetime | str
        if delay is None and at is None:
            wait, not_before = _NO_WAIT, None
            now = format_timestamp(clock.time())
        else:
            now = clock.now()
            wait, not_before = self._schedule(job, backend, now, delay, at)
        if ordering_key is not None or job.ordering_key is not None:
            ordering_key = self._ordering(job, backend, value, ordering_key)
        job_id = self._job_id(job, idempotency_key)
        if traceparent is None:
            traceparent = current_traceparent.get()
        else:
            _check_traceparent(job, traceparent)
        data_json = job.dump_json(value)
        offload_at = None if self._payload_spec is None else \
            caps.max_message_size if self.offload_above is None else self.offload_above
        if offload_at is not None and len(data_json) > offload_at:  # the envelope is larger still
            body = self._offload(job, job_id, now, data_json, idempotency_key, not_before, traceparent)
        else:
            body = envelope.encode(job_id=job_id, app=self.name, job_type=job.name, time=now,
                                   data_json=data_json, key=idempotency_key,
                                   not_before=not_before, traceparent=traceparent,
                                   plain_id=True)  # _job_id gives hex
            if offload_at is not None and len(body) > offload_at:
                body = self._offload(job, job_id, now, data_json, idempotency_key, not_before, traceparent)
        if len(body) > caps.max_message_size:
            raise PayloadError(
                f"job {job.name!r}: the message is {len(body)} bytes, over the "
                f"{backend.scheme} limit of {caps.max_message_size} bytes; store the large "
                "part elsewhere: give the app a payload store (cq.App(..., payload_store="
                "'s3://bucket/prefix')) and it goes there by itself", job=job.name)
        if self._multi or priority is not None:
            return OutgoingMessage(body, job_id, job.name, wait, idempotency_key, ordering_key,
                                   job.retry.attempts, queue if self._multi else None, priority)
        return OutgoingMessage(body, job_id, job.name, wait, idempotency_key, ordering_key,
                               job.retry.attempts)

    @staticmethod
    def _schedule(job: Job[Any, Any], backend: Backend, now: datetime, delay: timedelta | None,
                  at: datetime | None) -> tuple[timedelta, datetime | None]:
        """The delay the backend carries, and the due time a longer delay hops to."""
        wait = _wait(job.name, now, delay, at)
        caps = backend.capabilities
        if caps.max_delay is None or wait <= caps.max_delay:
            return wait, None
        if not caps.delay_hops:
            if caps.max_delay <= timedelta(0):  # no per-message delay at all
                kind = f"a FIFO {backend.scheme} queue" if caps.fifo else f"the {backend.scheme} backend"
                raise UnsupportedFeature(
                    f"job {job.name!r}: delay/at asks for {wait}, but {kind} has no per-message "
                    "delay; enqueue without delay= and at=, or enqueue it when it is due "
                    "(e.g. from a scheduler), or send delayed jobs to a queue that has delays"
                    + (" (a standard SQS queue delays up to 15 minutes and hops beyond)"
                       if backend.scheme == "sqs" else ""))
            raise UnsupportedFeature(
                f"job {job.name!r}: a delay of {wait} is longer than the {backend.scheme} "
                f"backend allows ({caps.max_delay}) and it cannot hop; enqueue it later "
                "or use a backend with longer delays")
        return caps.max_delay, now + wait

    @staticmethod
    def _ordering(job: Job[Any, Any], backend: Backend, value: Any, ordering_key: str | None) -> str | None:
        """The message's FIFO group: the enqueue's, else the job's (a string or a function)."""
        if ordering_key is None and job.ordering_key is not None:
            ordering_key = job.ordering_key if isinstance(job.ordering_key, str) \
                else job.ordering_key(value)
        if ordering_key is not None and not backend.capabilities.fifo:
            raise UnsupportedFeature(
                f"job {job.name!r}: ordering_key needs a FIFO queue, and {backend!r} is not "
                "one; use a FIFO queue or drop the ordering key")
        return ordering_key

    def _job_id(self, job: Job[Any, Any], idempotency_key: str | None) -> str:
        """A fresh random id, or the same id for the same idempotency key."""
        if idempotency_key is None:
            return os.urandom(16).hex()  # as unique as a uuid4, five times cheaper
        if not isinstance(idempotency_key, str) or not idempotency_key:
            raise ConfigurationError(f"job {job.name!r}: idempotency_key must be a non-empty string")
        import hashlib  # loads OpenSSL: only apps that use keys pay for it

        # the same key always gives the same id, so every backend can answer a duplicate
        # with the first job's id
        return hashlib.sha256(f"{self.name}\x00{idempotency_key}".encode()).hexdigest()[:32]

    def _enqueue(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send through the middleware's ``enqueue`` hooks (outermost first)."""
        hooks = overrides(self._middleware, "enqueue") if self._middleware else ()
        if not hooks:
            return self._send(messages)
        sent: list[list[str]] = []

        def innermost(final: Sequence[OutgoingMessage]) -> list[str]:
            ids = self._send(final)
            sent.append(ids)
            return ids

        call: Callable[[Sequence[OutgoingMessage]], list[str]] = innermost
        for hook in reversed(hooks):
            call = _bind_enqueue(hook, call)
        try:
            ids = call(messages)
        except Exception:
            if not sent:
                raise  # nothing was sent: the caller sees the error and may try again
            import logging

            logging.getLogger("cloudqueue").exception(
                "a middleware raised after the messages were sent; returning their ids")
            return sent[0]
        return sent[0] if sent else ids

    def _send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        if self._multi:
            return self._send_routed(messages)
        if len(messages) == 1:  # one message: the backend's own call and error
            return self.backend.send(messages)
        # chunks of max_batch, several at once; EnqueueError says what reached the queue
        from ._sending import send_all

        return send_all(self.backend, messages)

    def _send_routed(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send each message through its queue's backend; several queues at once."""
        primary = self._primary
        first = messages[0].queue or primary if messages else primary
        if all((out.queue or primary) == first for out in messages):
            if len(messages) == 1:
                return self.queue(first).send(messages)
            from ._sending import send_all

            return send_all(self.queue(first), messages)
        from ._sending import send_routed

        return send_routed({name: self.queue(name) for name in self._specs}, messages, primary)

    # -- consuming ---------------------------------------------------------------------
    def drain(self, *, fail_fast: bool = False, follow_delays: bool = False,
              max_jobs: int | None = None, queues: Sequence[str] | None = None) -> DrainReport:
        """Run every job that is due now, until none is left (tests and local work).

        With several queues, each receive takes from the first queue in ``queues`` order
        that has due work (strict priority).

        Args:
            fail_fast: re-raise the first exception a job raises (after its message was
                settled, so the queue stays consistent); poison raises a CloudQueueError.
            follow_delays: when nothing is due, sleep on the clock until the next message
                is, so retries and delayed jobs run too. A fake clock
                (``cloudqueue.testing.FakeClock``) jumps; on the real clock this really
                sleeps (six hours for a six-hour delay) and logs a warning saying until
                when, for any wait of 5 s or more.
            max_jobs: stop after this many deliveries (guards against a job that
                re-enqueues itself forever).
            queues: the queues to drain, highest priority first (default: every queue
                of the app, in declared order).
        """
        backends = [self.queue(name) for name in self.queues_in(queues)]
        backend = backends[0]
        report = DrainReport()
        dispatcher = self.dispatcher
        dispatcher.refresh()
        while max_jobs is None or report.processed < max_jobs:
            want = 100 if max_jobs is None else min(100, max_jobs - report.processed)
            for backend in backends:
                batch = backend.receive(max_messages=want)
                if batch:
                    break
            if not batch:
                if not follow_delays or not self._sleep_until_next(backends):
                    break
                continue
            for index, delivery in enumerate(batch):
                result = dispatcher.handle(delivery)
                assert result is not None  # not quiet: every delivery has its result
                dispatcher.settle(backend, result)
                report.add(result)
                if result.interrupted:  # Ctrl-C in a job: give the rest back, then stop
                    dispatcher.give_back(backend, batch[index + 1:])
                    raise KeyboardInterrupt
                if fail_fast and result.outcome in (Outcome.RETRY, Outcome.DEAD_LETTER):
                    dispatcher.give_back(backend, batch[index + 1:])
                    raise result.error or CloudQueueError(str(result.reason or "job failed"))
        if dispatcher.buffered:
            dispatcher.flush()
        return report

    def _sleep_until_next(self, backends: Sequence[Backend]) -> bool:
        dues = []
        for backend in backends:
            next_due = getattr(backend, "next_due", None)
            if next_due is None:
                raise UnsupportedFeature(f"drain(follow_delays=True) needs a backend that can tell "
                                         f"when its next message is due; {backend!r} cannot")
            dues.append(next_due())
        due = min((when for when in dues if when is not None), default=None)
        if due is None:
            return False
        seconds = (due - self.clock.now()).total_seconds()
        if seconds >= 5 and isinstance(self.clock, SystemClock):
            # a real sleep a user may not expect: say what it waits for, and the way out
            import logging

            logging.getLogger("cloudqueue").warning(
                "drain(follow_delays=True): nothing is due; sleeping %s in real time, until %s, "
                "for the next delayed or retried message (a FakeClock jumps instead; "
                "drain() without follow_delays returns now)",
                timedelta(seconds=round(seconds)), due.isoformat(timespec="seconds"))
        # a float clock can land a hair short of the due time; then step the smallest bit
        self.clock.sleep(seconds if seconds > 0 else 1e-6)
        return True

    def worker(self, concurrency: int = 8, **options: Any) -> Worker:
        """A long-running consumer for pull backends; see ``cloudqueue.worker.Worker``
        (``queues=[...]``, ``strategy="strict" | "weighted"``, ``weights={...}``)."""
        from .worker import Worker

        return Worker(self, concurrency=concurrency, **options)

    def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Each queue's counts (``Backend.stats``), by queue name, in the given order."""
        return {name: self.queue(name).stats() for name in self.queues_in(queues)}

    def close(self) -> None:
        """Close the queues opened so far, the idempotency store, the payload store and the
        dispatcher's event loop."""
        self.dispatcher.close()
        if self._idempotency is not None:
            self._idempotency.close()
        for backend in self._backends.values():
            backend.close()
        if self._payloads is not None and isinstance(self._payload_spec, str):
            self._payloads.close()  # a store passed in belongs to the caller

    def __repr__(self) -> str:
        if self._multi:
            return f"<App {self.name} jobs={len(self._jobs)} queues={list(self._specs)!r}>"
        return f"<App {self.name} jobs={len(self._jobs)} backend={self._backend_spec!r}>"


def _idempotency(app: App, store: Any) -> Idempotency | None:
    if store is None:
        return None
    from ._store_guard import Idempotency
    from .store import Store

    if not isinstance(store, (str, Store)):
        raise ConfigurationError(f"App store must be a URL string or a cloudqueue.store.Store, got "
                                 f"{type(store).__name__}; e.g. store='memory://'")
    return Idempotency(app, store)


def _once(app: App, job: str, once: Any) -> Once | bool | None:
    """A job's ``once=``, checked: None, False, or a ``cq.Once`` (``True`` is ``cq.Once()``)."""
    if once is None or once is False:
        return once
    from .store import Once

    if once is True:
        once = Once()
    if not isinstance(once, Once):
        raise ConfigurationError(f"job {job!r}: once must be True, False or a cq.Once(...), got {once!r}")
    if app.idempotency is None:
        raise ConfigurationError(
            f"job {job!r}: once= needs a store to remember what ran; pass "
            f"cq.App({app.name!r}, store='memory://') (or dynamodb://TABLE, firestore://PROJECT/COLLECTION)")
    return once


def _bind_enqueue(hook: Callable[..., list[str]], call_next: Callable[[Sequence[OutgoingMessage]], list[str]],
                  ) -> Callable[[Sequence[OutgoingMessage]], list[str]]:
    def call(messages: Sequence[OutgoingMessage]) -> list[str]:
        return hook(messages, call_next)
    return call


def _payload_settings(name: str, payload_store: Any, offload_above: Any,
                      ) -> tuple[str | PayloadStore | None, PayloadStore | None, int | None]:
    """Check ``payload_store`` and ``offload_above``: (the spec, the store if given one, the size)."""
    if payload_store is None and offload_above is None:
        return None, None, None  # no claim check: nothing more is imported
    from .payloads import PayloadStore

    if payload_store is not None and not isinstance(payload_store, (str, PayloadStore)):
        raise ConfigurationError(
            f"app {name!r}: payload_store must be a URL (e.g. 's3://bucket/prefix') or a "
            f"cloudqueue.payloads.PayloadStore, got {type(payload_store).__name__}")
    if offload_above is not None:
        if type(offload_above) is not int or offload_above < 0:
            raise ConfigurationError(
                f"app {name!r}: offload_above must be a number of bytes (an int >= 0), got "
                f"{offload_above!r}; e.g. offload_above=64 * 1024")
        if payload_store is None:
            raise ConfigurationError(
                f"app {name!r}: offload_above needs a payload_store to offload to; add "
                "payload_store='s3://bucket/prefix' (or gs://, memory://)")
    store = payload_store if isinstance(payload_store, PayloadStore) else None
    return payload_store or None, store, offload_above


def _queue_specs(app: str, queues: Mapping[str, str | Backend]) -> dict[str, str | Backend]:
    """``queues=`` checked: names, values, no queue twice."""
    if not isinstance(queues, Mapping) or not queues:
        raise ConfigurationError(
            f"app {app!r}: queues= must be a non-empty mapping of name to URL or Backend, e.g. "
            "queues={'critical': 'sqs://shop-critical', 'default': 'sqs://shop'}")
    specs: dict[str, str | Backend] = {}
    seen: dict[object, str] = {}
    for name, spec in queues.items():
        if not isinstance(name, str) or not _QUEUE_NAME.match(name):
            raise ConfigurationError(
                f"app {app!r}: queue name {name!r} must be 1-63 letters, digits, '-' or '_', "
                "starting with a letter or digit (it names Terraform resources too)")
        if not isinstance(spec, (str, Backend)) or not spec:
            raise ConfigurationError(
                f"app {app!r}: queue {name!r} must be a URL string or a Backend, got {spec!r}")
        same = seen.get(spec if isinstance(spec, str) else id(spec))
        if same is not None and spec != "memory://":  # each memory:// is a queue of its own
            raise ConfigurationError(
                f"app {app!r}: queues {same!r} and {name!r} are the same queue ({spec!r}); "
                "give each name its own queue")
        seen[spec if isinstance(spec, str) else id(spec)] = name
        specs[name] = spec
    return specs


def _check_priority(job: Job[Any, Any], queue: str, backend: Backend, priority: int) -> None:
    if type(priority) is not int:
        raise ConfigurationError(f"job {job.name!r}: priority= must be an int (higher runs first), "
                                 f"got {priority!r}")
    if not backend.capabilities.priority:
        raise UnsupportedFeature(
            f"job {job.name!r}: priority= needs a queue that orders messages by priority "
            f"(Capabilities.priority), and queue {queue!r} ({backend!r}) does not; give urgent "
            "jobs their own queue instead: cq.App(queues={'critical': ..., 'default': ...}) and "
            "enqueue(..., queue='critical') or @app.job(queue='critical')")


def _check_traceparent(job: Job[Any, Any], traceparent: str) -> None:
    if not _TRACEPARENT.match(traceparent):
        raise ConfigurationError(
            f"job {job.name!r}: traceparent {traceparent!r} is not W3C trace context "
            "(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)")


def _wait(job: str, now: datetime, delay: timedelta | None, at: datetime | None) -> timedelta:
    if delay is not None and at is not None:
        raise ConfigurationError(f"job {job!r}: pass delay= or at=, not both")
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ConfigurationError(
                f"job {job!r}: at= must be an aware datetime, e.g. datetime.now(timezone.utc) "
                "+ timedelta(hours=1)")
        return max(at - now, timedelta(0))
    if delay is None:
        return timedelta(0)
    if not isinstance(delay, timedelta):
        raise ConfigurationError(f"job {job!r}: delay= must be a datetime.timedelta, got {delay!r}")
    if delay < timedelta(0):
        raise ConfigurationError(f"job {job!r}: delay= must not be negative, got {delay}")
    return delay


def _where(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
    return f"{getattr(func, '__qualname__', func)!r} at {where}"
