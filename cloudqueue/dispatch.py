"""One dispatcher for every consumer: it alone decides a delivery's outcome and applies it.

    delivery ──prepare──> poison? ──────────────> DEAD_LETTER (at once, with the reason)
                     └──> not due yet (hop)? ───> HOP (send on with the time left)
                     └──> Task ──middleware(run)──> ok ──────> ACK
                                                └─> Permanent > DEAD_LETTER
                                                └─> error ──> RETRY after backoff, or DEAD_LETTER
                                                              when the attempts are spent
                                                └─> Skip / Defer (middleware) > SKIP / DEFER
                                                └─> KeyboardInterrupt ──> RELEASE (and stop)

``prepare`` and ``run`` never touch the backend and never raise; ``settle`` applies a
result to the backend the delivery came from, logs it and tells the observers. The
worker, ``App.drain`` and the function shims (through ``lifecycle.Batch``) all go
through these three steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic_core import SchemaValidator, ValidationError, from_json

from ._errors import Defer, PayloadError, Permanent, RetryLater, Skip, StaleDelivery
from .backends.base import Backend, Delivery
from .clock import Clock, parse_time
from .context import JobContext, current_traceparent
from .envelope import DataRef, EnvelopeError, decode, envelope_validator
from .lifecycle import STAYS, Outcome, Reason, ReasonKind, StepFailed, overrides
from .logs import log_outcome, queue_name, successes_logged

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from .app import App
    from .envelope import Envelope
    from .job import Job

__all__ = ["Dispatcher", "Outcome", "Result", "Task"]

log = logging.getLogger("cloudqueue")

_ACK = Outcome.ACK
#: most message ids the dispatcher remembers receives that never ran for
_UNRUN_LIMIT = 100_000
#: runs a coroutine to completion and returns its value (the worker's runs it on its loop)
CoroutineRunner = Callable[[Coroutine[Any, Any, Any]], Any]


@dataclass(slots=True)
class Result:
    """The fate of one delivery.

    Attributes:
        outcome: what becomes of the message (``Outcome``).
        delivery: the delivery this is about.
        job_type / job_id: from the envelope, when it could be read.
        delay: for RETRY, HOP and DEFER.
        reason: why, as a kind and a text (None for a plain success).
        error: the exception the job (or a middleware) raised, if any.
        value: the job's return value on success.
        duration: seconds the job ran (measured when something observes settles).
        applied: False when the backend could not apply the outcome (the queue delivers
            the message again).
        interrupted: the job was stopped by KeyboardInterrupt: the consumer stops too.
        queue: the name of the queue it was settled on (set before the ``settled`` hooks).
        trace: (trace id, span id) in hex of the span of the run, set by a tracing
            middleware's ``settled`` hook (``cloudqueue.otel``) for the outcome's log record.
        claim: the payload-store object a claim-check message pointed at (deleted once
            the message is acknowledged).
    """

    outcome: Outcome
    delivery: Delivery
    job_type: str | None = None
    job_id: str | None = None
    delay: timedelta | None = None
    reason: Reason | None = None
    error: BaseException | None = None
    value: Any = None
    duration: float | None = None
    applied: bool = True
    interrupted: bool = False
    trace: tuple[str, str] | None = None
    queue: str | None = None
    claim: DataRef | None = None

    @property
    def poison(self) -> bool:
        return self.reason is not None and self.reason.kind is ReasonKind.POISON


class Task:
    """A delivery that parsed and validated: ready to run."""

    __slots__ = ("claim", "delivery", "enqueued_at", "job", "job_id", "key", "payload", "traceparent")

    def __init__(self, job: Job[Any, Any], payload: Any, delivery: Delivery, job_id: str,
                 enqueued_at: str, key: str | None, traceparent: str | None = None,
                 claim: DataRef | None = None) -> None:
        self.claim = claim
        self.job = job
        self.payload = payload
        self.delivery = delivery
        self.job_id = job_id
        self.enqueued_at = enqueued_at
        self.key = key
        self.traceparent = traceparent

    @property
    def attempt(self) -> int:
        return self.delivery.attempt

    def context(self, clock: Clock) -> JobContext:
        """The JobContext the job receives (built only for jobs that take one)."""
        return JobContext(job_id=self.job_id, job_type=self.job.name, attempt=self.delivery.attempt,
                          max_attempts=self.job.retry.attempts, enqueued_at=self.enqueued_at,
                          idempotency_key=self.key, deadline=self.delivery.deadline, clock=clock,
                          traceparent=self.traceparent, job=self.job)

    def __repr__(self) -> str:
        return f"<Task {self.job.name} {self.job_id} attempt {self.delivery.attempt}>"


class _Unfetched(Task):
    """A claim-check task of a job the idempotency store guards: its payload is fetched
    inside the run, after the store claimed the key, so a duplicate of a completed job is
    skipped (and one whose twin is running deferred) without reading an object the first
    run's success deleted."""

    __slots__ = ("envelope", "failure")

    def __init__(self, job: Job[Any, Any], delivery: Delivery, env: Envelope) -> None:
        super().__init__(job, None, delivery, env.id, env.time, env.key, env.traceparent, env.data_ref)
        self.envelope: Envelope | None = env
        #: the result of a fetch that failed (poison, or the store unreachable)
        self.failure: Result | None = None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _poison(delivery: Delivery, text: str, **fields: Any) -> Result:
    return Result(Outcome.DEAD_LETTER, delivery, reason=Reason(ReasonKind.POISON, text), **fields)


class Dispatcher:
    """Turns deliveries into results for one app's jobs, and applies them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._jobs = app._jobs
        self._loop: AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._fast: SchemaValidator | None = None
        self._run_hooks: tuple[Callable[..., Any], ...] = ()
        self._settled_hooks: tuple[Callable[[Result], None], ...] = ()
        self._flush_hooks: tuple[Callable[[], None], ...] = ()
        self._app_queue: str | None = None  # the app's queue by name, for the log records
        self._log_successes = False  # an outcome record at INFO is written (read per batch)
        # message id -> receives given back without running the job, on queues that count
        # every receive: taken off the attempt, so attempts count runs (in this process)
        self._unrun: dict[str, int] = {}
        self._unrun_lock = threading.Lock()
        self._listening = False
        self._claims = False  # the app has a payload store (the claim check)
        #: something watches settles (middleware, ``app.on``, or the outcome log at INFO):
        #: successes are settled and timed one by one, not skipped by the shims' fast path
        self.observed = False

    def refresh(self) -> bool:
        """Re-read whether anything watches settles (the log level may have changed since);
        consumers call it once per batch or run. Returns ``observed``."""
        self._log_successes = successes_logged()
        # a claim check deletes its object after the ack: every success is settled then
        self.observed = bool(self._settled_hooks) or self._listening or self._log_successes or self._claims
        return self.observed

    def jobs_changed(self) -> None:
        """Forget the parser built for the old set of jobs."""
        self._fast = None

    def hooks_changed(self) -> None:
        """Re-read the app's middleware and event callbacks."""
        middleware = self.app.middleware
        self._run_hooks = tuple(overrides(middleware, "run")) + self._store_hooks()
        self._settled_hooks = tuple(overrides(middleware, "settled"))
        self._flush_hooks = tuple(overrides(middleware, "flush"))
        #: some middleware buffers what it saw: the shims call ``flush`` after each batch
        self.buffered = bool(self._flush_hooks)
        self._listening = self.app.has_listeners
        claims = self._claims = self.app.has_payload_store
        self.refresh()
        # no middleware around runs: ``run`` is the plain call, one frame less per job
        self.run = self._run_wrapped if self._run_hooks else self._call  # type: ignore[method-assign]
        if claims:
            self.run = self._run_claimed  # type: ignore[method-assign]

    def _store_hooks(self) -> tuple[Callable[..., Any], ...]:
        """The idempotency store's step and, inside it, the flows' (none without a store)."""
        guard = self.app.idempotency
        if guard is None:
            return ()
        from .flows import guarded  # flows keep their state in the store

        return (guarded(guard.run, self.app),)

    # -- parse -------------------------------------------------------------------------
    def prepare(self, delivery: Delivery) -> Task | Result:
        """Parse and validate a delivery; return a runnable Task, or a final Result."""
        if self._unrun:
            skipped = self._unrun.get(delivery.message_id)
            if skipped:
                delivery.attempt = max(delivery.attempt - skipped, 1)
        # One pass in pydantic-core parses the JSON and checks the envelope and the
        # payload together; anything it refuses takes the slow path, which decides
        # (and explains) exactly what is wrong.
        fast = self._fast
        if fast is None:
            if not self.app.jobs:
                return self._prepare_slow(delivery)
            fast = self._fast = envelope_validator(
                {name: job.codec.core_schema for name, job in self.app.jobs.items()})
        try:
            env = fast.validate_json(delivery.body)
            return self._task(delivery, env, self._jobs[env["type"]])
        except (ValidationError, ValueError, KeyError, TypeError):
            return self._prepare_slow(delivery)

    def _task(self, delivery: Delivery, env: dict[str, Any], job: Job[Any, Any]) -> Task | Result:
        """The task for an envelope the fast parser accepted, or HOP when it is not due yet."""
        not_before = env.get("cqnotbefore")
        if not_before is not None:
            left = parse_time(not_before) - self.app.clock.now()  # ValueError: the slow path explains
            if left > timedelta(0):
                return Result(Outcome.HOP, delivery, job_type=job.name, job_id=env["id"], delay=left)
        return Task(job, env["data"], delivery, env["id"], env["time"], env.get("cqkey"),
                    env.get("traceparent"))

    def _prepare_slow(self, delivery: Delivery) -> Task | Result:
        try:
            env = decode(delivery.body)
        except EnvelopeError as exc:
            return _poison(delivery, f"not a cloudqueue envelope: {exc}")
        except Exception as exc:  # whatever else cannot be read is poison too, never a crash
            return _poison(delivery, f"cannot be read: {_describe(exc)}", error=exc)
        job = self.app.jobs.get(env.type)
        if job is None:
            return _poison(delivery, f"unknown job type {env.type!r} "
                                     f"(app {self.app.name!r} has {sorted(self.app.jobs)})",
                           job_type=env.type, job_id=env.id)
        if env.data_ref is not None:
            return self._prepare_claimed(delivery, job, env)
        try:  # poison goes at once, also when it is not due yet
            payload = job.codec.validate(env.data)
        except ValidationError as exc:
            err = PayloadError.from_validation(job.name, exc, fix="fix the producer, then redrive")
            return _poison(delivery, str(err), job_type=env.type, job_id=env.id, error=err)
        except Exception as exc:  # a validator that raises something else is still the payload's fault
            return _poison(delivery, f"payload for job {job.name!r} cannot be validated: {_describe(exc)}",
                           job_type=env.type, job_id=env.id, error=exc)
        try:
            not_before = env.not_before_at
        except ValueError as exc:
            return _poison(delivery, f"not a cloudqueue envelope: cqnotbefore: {exc}",
                           job_type=env.type, job_id=env.id)
        if not_before is not None:
            left = not_before - self.app.clock.now()
            if left > timedelta(0):
                return Result(Outcome.HOP, delivery, job_type=env.type, job_id=env.id, delay=left)
        return Task(job, payload, delivery, env.id, env.time, env.key, env.traceparent)

    def _prepare_claimed(self, delivery: Delivery, job: Job[Any, Any], env: Envelope) -> Task | Result:
        """A version 2 envelope: fetch the payload (not before it is due), check it, validate it.

        A missing or changed object is poison; a store that cannot be reached fails the
        attempt, retried by the job's policy like a failed run. A job the idempotency store
        guards fetches inside its run instead, once the store has claimed the key.
        """
        try:
            not_before = env.not_before_at
        except ValueError as exc:
            return _poison(delivery, f"not a cloudqueue envelope: cqnotbefore: {exc}",
                           job_type=env.type, job_id=env.id)
        if not_before is not None:  # hop first: a payload is fetched once, when it is due
            left = not_before - self.app.clock.now()
            if left > timedelta(0):
                return Result(Outcome.HOP, delivery, job_type=env.type, job_id=env.id, delay=left)
        guard = self.app.idempotency
        if guard is not None and self._claims:  # without a payload store the fetch below explains
            unfetched = _Unfetched(job, delivery, env)
            if guard.policy(unfetched) is not None:
                return unfetched
        task = Task(job, None, delivery, env.id, env.time, env.key, env.traceparent, env.data_ref)
        failure = self._fetch(task, env)
        return task if failure is None else failure

    def _fetch(self, task: Task, env: Envelope) -> Result | None:
        """Fetch, check and validate a claim-check task's payload into ``task.payload``;
        the final result instead when that fails."""
        from .payloads import fetch

        job, delivery = task.job, task.delivery
        try:
            data = fetch(self.app.payload_store, env)
        except PayloadError as exc:
            return _poison(delivery, str(exc), job_type=env.type, job_id=env.id, error=exc)
        except Exception as exc:
            return self.failed(task, exc, before_run=True, what="the payload could not be fetched")
        try:
            task.payload = job.codec.validate(from_json(data))  # as the slow path reads data
        except ValidationError as exc:
            err = PayloadError.from_validation(job.name, exc, fix="fix the producer, then redrive")
            return _poison(delivery, str(err), job_type=env.type, job_id=env.id, error=err)
        except Exception as exc:
            return _poison(delivery, f"payload for job {job.name!r} cannot be validated: {_describe(exc)}",
                           job_type=env.type, job_id=env.id, error=exc)
        return None

    def _fetch_and_call(self, task: Task, runner: CoroutineRunner | None = None) -> Result:
        """``_call`` for an unfetched claim-check task: fetch (inside the store's step), then run."""
        assert isinstance(task, _Unfetched)
        env = task.envelope
        if env is not None:  # a later attempt in this process has it already
            failure = self._fetch(task, env)
            if failure is not None:
                task.failure = failure  # ``failed`` gives it back for its error (the store's step asks)
                return failure
            task.envelope = None
        return self._call(task, runner)

    # -- run ---------------------------------------------------------------------------
    def run(self, task: Task, runner: CoroutineRunner | None = None) -> Result:
        """Run a task here, through the app's middleware; never raises.

        Args:
            runner: runs an async job's coroutine (default: the dispatcher's own loop).
        """
        if self._run_hooks:
            return self._run_wrapped(task, runner)
        return self._call(task, runner)

    def _call(self, task: Task, runner: CoroutineRunner | None = None) -> Result:
        job = task.job
        trace = current_traceparent.set(task.traceparent) if task.traceparent else None
        started = time.perf_counter() if self.observed else None
        try:
            if job.takes_context:
                value = job.func(task.payload, task.context(self.app.clock))
            else:
                value = job.func(task.payload)
            if job.is_async:
                value = (runner or self._run_coroutine)(value)
        except BaseException as exc:  # every job error is classified; none escapes
            result = self.failed(task, exc)
        else:
            result = Result(_ACK, task.delivery, job.name, task.job_id, None, None, None, value)
        finally:
            if trace is not None:
                current_traceparent.reset(trace)
        if started is not None:
            result.duration = time.perf_counter() - started
        return result

    def _run_wrapped(self, task: Task, runner: CoroutineRunner | None = None,
                     call_job: Callable[[Task, CoroutineRunner | None], Result] | None = None) -> Result:
        ran: list[Result] = []
        call_job = call_job or self._call

        def innermost() -> Any:
            result = call_job(task, runner)
            ran.append(result)
            if result.outcome is _ACK:
                return result.value
            assert result.error is not None
            raise result.error

        call: Callable[[], Any] = innermost
        for hook in reversed(self._run_hooks):
            call = partial(hook, task, call)
        try:
            call()
        except BaseException as exc:
            if isinstance(exc, StepFailed):  # the library's own step: the delivery fails
                return self.failed(task, exc)
            if ran:  # the job ran: what it did decides, whatever a middleware made of it
                if exc is not ran[0].error:
                    log.warning("job %s %s: a middleware raised after the job ran (%s); the job's "
                                "own outcome stands", task.job.name, task.job_id, _describe(exc),
                                exc_info=exc)
                return ran[0]
            return self.failed(task, exc, before_run=True)
        if ran:
            return ran[0]
        from ._errors import ConfigurationError

        log.error("job %s %s: a middleware returned without calling call_next; raise cq.Skip to "
                  "skip a job", task.job.name, task.job_id)
        return self.failed(task, ConfigurationError(
            "a middleware returned without running the job (raise cq.Skip to skip it)"), before_run=True)

    def _run_claimed(self, task: Task, runner: CoroutineRunner | None = None) -> Result:
        """``run``, and the result remembers the task's payload object (for settle)."""
        call = self._fetch_and_call if type(task) is _Unfetched else self._call
        result = self._run_wrapped(task, runner, call) if self._run_hooks else call(task, runner)
        if task.claim is not None:
            result.claim = task.claim
        return result

    async def run_async(self, task: Task) -> Result:
        """Run a task from a running event loop, on a thread (the same path as ``run``)."""
        import asyncio

        return await asyncio.to_thread(self.run, task)

    def process(self, delivery: Delivery) -> Result:
        """prepare + run."""
        result = self.handle(delivery)
        assert result is not None  # not quiet: every delivery has its result
        return result

    def handle(self, delivery: Delivery, runner: CoroutineRunner | None = None, *,
               quiet: bool = False) -> Result | None:
        """prepare + run in one step: what the consumers' loops call.

        The same outcome as ``prepare`` then ``run``, with less work per message in the
        common case (no middleware around runs, a plain function job, nothing left to
        take off the attempt): no Task is built unless the job fails. With ``quiet``, a
        success that nothing observes (no settled hooks, no ``app.on`` callbacks) comes
        back as None: the caller acknowledges it (``ack``) or, in a function shim, leaves
        it to the platform.
        """
        fast = self._fast
        if fast is None or self._run_hooks or self._unrun:
            return self._handled(self.prepare(delivery), runner, quiet)
        try:
            env = fast.validate_json(delivery.body)
            job = self._jobs[env["type"]]
            if job.takes_context or job.is_async or "cqnotbefore" in env or "traceparent" in env:
                return self._handled(self._task(delivery, env, job), runner, quiet)
        except (ValidationError, ValueError, KeyError, TypeError):
            return self._handled(self._prepare_slow(delivery), runner, quiet)
        payload = env["data"]
        observed = self.observed
        started = time.perf_counter() if observed else 0.0
        try:
            value = job.func(payload)
        except BaseException as exc:  # every job error is classified; none escapes
            result = self.failed(Task(job, payload, delivery, env["id"], env["time"], env.get("cqkey")), exc)
        else:
            if quiet and not observed:
                return None
            result = Result(_ACK, delivery, job.name, env["id"], None, None, None, value)
        if observed:
            result.duration = time.perf_counter() - started
        return result

    def _handled(self, prepared: Task | Result, runner: CoroutineRunner | None, quiet: bool) -> Result | None:
        result = prepared if type(prepared) is Result else self.run(prepared, runner)  # type: ignore[arg-type]
        if quiet and result.outcome is _ACK and not self.observed:
            return None
        return result

    def ack(self, backend: Backend, delivery: Delivery) -> bool:
        """Acknowledge a success ``handle(quiet=True)`` returned None for: ``settle`` of
        an ACK, without building its Result unless the backend refuses it."""
        try:
            backend.ack(delivery)
        except Exception as exc:
            return self._unsettled(Result(_ACK, delivery), exc, backend)
        if self._unrun:
            with self._unrun_lock:
                self._unrun.pop(delivery.message_id, None)
        return True

    def failed(self, task: Task, exc: BaseException, *, before_run: bool = False,
               what: str = "a middleware failed before the job ran") -> Result:
        """Classify an exception from a job (or from something before it ran: ``what``)."""
        job, delivery = task.job, task.delivery
        if isinstance(exc, StepFailed):
            exc = exc.error
        if type(task) is _Unfetched and task.failure is not None and exc is task.failure.error:
            return task.failure  # its payload could not be fetched: poison, or failed as such
        if isinstance(exc, Skip):
            return Result(Outcome.SKIP, delivery, job.name, task.job_id,
                          reason=Reason(ReasonKind.SKIPPED, exc.reason), error=exc)
        if isinstance(exc, Defer):
            return Result(Outcome.DEFER, delivery, job.name, task.job_id, delay=exc.delay,
                          reason=Reason(ReasonKind.DEFERRED, exc.reason), error=exc)
        if isinstance(exc, KeyboardInterrupt):
            return Result(Outcome.RELEASE, delivery, job.name, task.job_id,
                          reason=Reason(ReasonKind.DEFERRED, "interrupted (KeyboardInterrupt)"),
                          error=exc, interrupted=True)
        what = f"{what}: {_describe(exc)}" if before_run else _describe(exc)
        attempt, attempts = delivery.attempt, job.retry.attempts
        if isinstance(exc, Permanent):
            return Result(Outcome.DEAD_LETTER, delivery, job.name, task.job_id,
                          reason=Reason(ReasonKind.PERMANENT, exc.reason), error=exc)
        if attempt >= attempts:
            return Result(Outcome.DEAD_LETTER, delivery, job.name, task.job_id, error=exc,
                          reason=Reason(ReasonKind.EXHAUSTED, f"attempt {attempt} of {attempts} failed: {what}"))
        delay = exc.delay if isinstance(exc, RetryLater) else job.retry.backoff.delay(attempt)
        return Result(Outcome.RETRY, delivery, job.name, task.job_id, delay=delay,
                      reason=Reason(ReasonKind.FAILED, what), error=exc)

    def _run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Any:
        import asyncio  # only async jobs pay for it

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # called from inside a loop: run this one beside it, on a thread of its own
            box: list[Any] = []

            def target() -> None:
                try:
                    box.append((True, asyncio.run(coro)))
                except BaseException as exc:
                    box.append((False, exc))

            thread = threading.Thread(target=target, name="cloudqueue-async-job")
            thread.start()
            thread.join()
            ok, value = box[0]
            if not ok:
                raise value
            return value
        with self._loop_lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            loop = self._loop
        return loop.run_until_complete(coro)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()

    # -- settle ------------------------------------------------------------------------
    def settle(self, backend: Backend, result: Result) -> bool:
        """Apply a result to the backend the delivery came from, log it, tell the observers.

        Returns whether the backend applied it; when not (an error, or a stale handle),
        the message stays in the queue and is delivered again. Never raises.
        """
        delivery = result.delivery
        outcome = result.outcome
        try:
            if outcome is _ACK or outcome is Outcome.SKIP:
                backend.ack(delivery)
            elif outcome is Outcome.RETRY:
                assert result.delay is not None
                backend.retry(delivery, result.delay)
            elif outcome is Outcome.DEAD_LETTER:
                backend.dead_letter(delivery, result.reason or Reason(ReasonKind.OTHER, "dead-lettered"))
            elif outcome is Outcome.HOP:
                assert result.delay is not None
                max_delay = backend.capabilities.max_delay
                backend.hop(delivery, result.delay if max_delay is None else min(result.delay, max_delay))
            elif outcome is Outcome.DEFER:
                assert result.delay is not None
                self.note_unrun(backend, (delivery,))
                backend.defer(delivery, result.delay)
            else:
                self.note_unrun(backend, (delivery,))
                backend.release(delivery)
        except Exception as exc:
            return self._unsettled(result, exc, backend)
        if self._unrun and outcome not in STAYS:  # settled for good: nothing more to take off
            with self._unrun_lock:
                self._unrun.pop(delivery.message_id, None)
        if result.claim is not None and result.applied and (outcome is _ACK or outcome is Outcome.SKIP):
            self._release_claim(result)
        elif outcome is Outcome.DEAD_LETTER and b'"cqflow' in delivery.body and self.app.idempotency is not None:
            self._flow_member_dead(result)
        if self.observed:
            result.queue = self._queue_name(backend)
            self._observe(result)  # first: a tracing middleware puts its span's ids on the result
        if outcome is not _ACK or self._log_successes:
            log_outcome(result, result.queue or self._queue_name(backend))
        return result.applied

    def _flow_member_dead(self, result: Result) -> None:
        """A flow's child or parent went to dead letters: record it in its flow (a job
        that ran has it recorded already; poison never ran, and is recorded here)."""
        from .flows import poisoned

        try:
            poisoned(self.app, result.delivery.body, str(result.reason or "dead-lettered"))
        except Exception:
            log.exception("job %s %s went to dead letters, and its flow could not record it; the flow "
                          "waits for it until its ttl", result.job_type, result.job_id)

    def _release_claim(self, result: Result) -> None:
        """Delete an acknowledged message's payload object (a failure leaves it to the
        store's lifecycle rule). Retried and dead-lettered messages keep theirs."""
        claim = result.claim
        assert claim is not None
        store = self.app.payload_store
        key = store.key_of(claim.ref) if store is not None else None
        if store is None or key is None:
            return
        try:
            store.delete(key)
        except Exception:
            log.warning("job %s %s: could not delete its payload object %s; the store's lifecycle "
                        "rule removes it", result.job_type, result.job_id, claim.ref, exc_info=True)

    def _unsettled(self, result: Result, exc: Exception, backend: Backend | None = None) -> bool:
        """The backend did not apply ``result``: the message stays in the queue."""
        result.applied = False
        result.queue = queue = self._queue_name(backend)
        if isinstance(exc, StaleDelivery):
            self._observe(result, stalled=True)
            log_outcome(result, queue, str(exc))
            return False
        # the message returns after its visibility timeout
        if self.observed:
            self._observe(result)
        log_outcome(result, queue, _describe(exc), exc)
        return False

    def _queue_name(self, backend: Backend | None) -> str:
        """The name of the queue ``backend`` is (its ``name`` where it has one, as the memory
        and SQS backends and the Lambda shim's event queue do), else the app's queue."""
        named = getattr(backend, "name", None)  # optional on Backend: read, not required
        if isinstance(named, str) and named:
            return named
        if self._app_queue is None:
            self._app_queue = queue_name(self.app)
        return self._app_queue

    def flush(self) -> None:
        """Tell middleware that buffers (``Middleware.flush``) to write out what it holds:
        the function shims call it once per invocation, the worker when it stops."""
        for hook in self._flush_hooks:
            try:
                hook()
            except Exception:
                log.exception("a middleware's flush raised; ignored")

    def note_unrun(self, backend: Backend, deliveries: Sequence[Delivery]) -> None:
        """Remember receives that did not run the job, where the queue counts them (so the
        next delivery's attempt leaves them out); given back or not, the receive happened."""
        if backend.capabilities.uncounted_release:
            return
        with self._unrun_lock:
            unrun = self._unrun
            for delivery in deliveries:
                unrun[delivery.message_id] = unrun.pop(delivery.message_id, 0) + 1
            while len(unrun) > _UNRUN_LIMIT:  # the oldest first: most of those settled elsewhere
                del unrun[next(iter(unrun))]

    def give_back(self, backend: Backend, deliveries: Sequence[Delivery]) -> None:
        """Release deliveries that were received but never started (one batch call)."""
        if not deliveries:
            return
        self.note_unrun(backend, deliveries)
        applied = True
        try:
            backend.release_many(deliveries)
        except Exception:  # they come back after their visibility timeout
            applied = False
            log.warning("could not give back %d unstarted message(s); they come back after their "
                        "visibility timeout", len(deliveries), exc_info=True)
        if self.observed or successes_logged():
            queue = self._queue_name(backend)
            for delivery in deliveries:
                result = Result(Outcome.RELEASE, delivery, applied=applied,
                                reason=Reason(ReasonKind.DEFERRED, "not started"), queue=queue)
                if self.observed:
                    self._observe(result)
                log_outcome(result, queue, None if applied else "the give-back failed")

    def _observe(self, result: Result, *, stalled: bool = False) -> None:
        for hook in self._settled_hooks:
            try:
                hook(result)
            except Exception:
                log.exception("a middleware's settled hook raised; ignored")
        if not self._listening:
            return
        app = self.app
        if stalled:
            app.emit("stalled", result)
            return
        outcome = result.outcome
        if outcome is _ACK:
            app.emit("completed", result)
        elif outcome is Outcome.RETRY:
            app.emit("failed", result)
            app.emit("retrying", result)
        elif outcome is Outcome.DEAD_LETTER:
            if result.reason is not None and result.reason.kind in (ReasonKind.PERMANENT, ReasonKind.EXHAUSTED):
                app.emit("failed", result)
            app.emit("dead_lettered", result)
