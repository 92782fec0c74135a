"""One dispatcher for every worker and function shim: a delivery becomes a ``Result``.

    delivery ──prepare──> poison? ──────────────> DEAD_LETTER (at once, with the reason)
                     └──> not due yet (hop)? ───> HOP (send on with the time left)
                     └──> Task ──run──> ok ─────> ACK
                                    └─> Permanent > DEAD_LETTER
                                    └─> error ──> RETRY after backoff, or DEAD_LETTER
                                                  when the attempts are spent

``prepare`` and ``run`` never touch the backend; ``settle`` applies a result to it.
Function shims use the results directly (e.g. to build a partial batch response).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic_core import SchemaValidator, ValidationError

from ._clock import Clock, parse_time
from ._errors import PayloadError, Permanent, RetryLater
from .backends.base import Backend, Delivery
from .context import JobContext, current_traceparent
from .envelope import EnvelopeError, decode, envelope_validator

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

    from .app import App
    from .job import Job

log = logging.getLogger("cloudqueue")


class Outcome(enum.Enum):
    """What becomes of a delivery."""

    ACK = "ack"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    HOP = "hop"


_ACK = Outcome.ACK


@dataclass(slots=True)
class Result:
    """The fate of one delivery.

    Attributes:
        outcome: ack, retry (after ``delay``), dead letter (with ``reason``) or hop.
        delivery: the delivery this is about.
        job_type / job_id: from the envelope, when it could be read.
        delay: for RETRY and HOP.
        reason: for DEAD_LETTER (and RETRY: the error, for logs).
        error: the job's exception, if it raised one.
        value: the job's return value on success.
    """

    outcome: Outcome
    delivery: Delivery
    job_type: str | None = None
    job_id: str | None = None
    delay: timedelta | None = None
    reason: str | None = None
    error: BaseException | None = None
    value: Any = None

    @property
    def poison(self) -> bool:
        return self.outcome is Outcome.DEAD_LETTER and bool(self.reason) and \
            str(self.reason).startswith("poison:")


class Task:
    """A delivery that parsed and validated: ready to run."""

    __slots__ = ("delivery", "enqueued_at", "job", "job_id", "key", "payload", "traceparent")

    def __init__(self, job: Job[Any, Any], payload: Any, delivery: Delivery, job_id: str,
                 enqueued_at: str, key: str | None, traceparent: str | None = None) -> None:
        self.job = job
        self.payload = payload
        self.delivery = delivery
        self.job_id = job_id
        self.enqueued_at = enqueued_at
        self.key = key
        self.traceparent = traceparent

    def context(self, clock: Clock) -> JobContext:
        """The JobContext the job receives (built only for jobs that take one)."""
        return JobContext(job_id=self.job_id, job_type=self.job.name, attempt=self.delivery.attempt,
                          max_attempts=self.job.retry.attempts, enqueued_at=self.enqueued_at,
                          idempotency_key=self.key, deadline=self.delivery.deadline, clock=clock,
                          traceparent=self.traceparent)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Dispatcher:
    """Turns deliveries into results for one app's jobs."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._loop: AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._fast: SchemaValidator | None = None

    def jobs_changed(self) -> None:
        """Forget the parser built for the old set of jobs."""
        self._fast = None

    # -- parse -------------------------------------------------------------------------
    def prepare(self, delivery: Delivery) -> Task | Result:
        """Parse and validate a delivery; return a runnable Task, or a final Result."""
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
        except ValidationError:
            return self._prepare_slow(delivery)
        job = self.app.jobs[env["type"]]
        not_before = env.get("cqnotbefore")
        if not_before is not None:
            left = parse_time(not_before) - self.app.clock.now()
            if left > timedelta(0):
                return Result(Outcome.HOP, delivery, job_type=job.name, job_id=env["id"], delay=left)
        return Task(job, env["data"], delivery, env["id"], env["time"], env.get("cqkey"),
                    env.get("traceparent"))

    def _prepare_slow(self, delivery: Delivery) -> Task | Result:
        try:
            env = decode(delivery.body)
        except EnvelopeError as exc:
            return Result(Outcome.DEAD_LETTER, delivery, reason=f"poison: not a cloudqueue envelope: {exc}")
        job = self.app.jobs.get(env.type)
        if job is None:
            return Result(Outcome.DEAD_LETTER, delivery, job_type=env.type, job_id=env.id,
                          reason=f"poison: unknown job type {env.type!r} "
                                 f"(app {self.app.name!r} has {sorted(self.app.jobs)})")
        if env.not_before is not None:
            left = env.not_before_at - self.app.clock.now()  # type: ignore[operator]
            if left > timedelta(0):
                return Result(Outcome.HOP, delivery, job_type=env.type, job_id=env.id, delay=left)
        try:
            payload = job.codec.validate(env.data)
        except ValidationError as exc:
            err = PayloadError.from_validation(job.name, exc, fix="fix the producer, then redrive")
            return Result(Outcome.DEAD_LETTER, delivery, job_type=env.type, job_id=env.id,
                          reason=f"poison: {err}", error=err)
        return Task(job, payload, delivery, env.id, env.time, env.key, env.traceparent)

    # -- run ---------------------------------------------------------------------------
    def run(self, task: Task) -> Result:
        """Run a task here (an async job runs on the dispatcher's event loop)."""
        job = task.job
        trace = current_traceparent.set(task.traceparent) if task.traceparent else None
        try:
            if job.takes_context:
                value = job.func(task.payload, task.context(self.app.clock))
            else:
                value = job.func(task.payload)
            if job.is_async:
                value = self._run_coroutine(value)
        except Exception as exc:  # every job error is classified
            return self.failed(task, exc)
        finally:
            if trace is not None:
                current_traceparent.reset(trace)
        return Result(_ACK, task.delivery, job.name, task.job_id, None, None, None, value)

    async def run_async(self, task: Task) -> Result:
        """Run a task on the running event loop (a sync job runs in a thread)."""
        import asyncio

        job = task.job
        args = (task.payload, task.context(self.app.clock)) if job.takes_context else (task.payload,)
        trace = current_traceparent.set(task.traceparent) if task.traceparent else None
        try:
            if job.is_async:
                value = await job.func(*args)
            else:
                value = await asyncio.to_thread(job.func, *args)
        except Exception as exc:
            return self.failed(task, exc)
        finally:
            if trace is not None:
                current_traceparent.reset(trace)
        return Result(_ACK, task.delivery, job.name, task.job_id, value=value)

    def process(self, delivery: Delivery) -> Result:
        """prepare + run."""
        prepared = self.prepare(delivery)
        return self.run(prepared) if isinstance(prepared, Task) else prepared

    def failed(self, task: Task, exc: Exception) -> Result:
        """Classify a job's exception into retry or dead letter."""
        job = task.job
        attempt, attempts = task.delivery.attempt, job.retry.attempts
        base = Result(Outcome.DEAD_LETTER, task.delivery, job.name, task.job_id, error=exc)
        if isinstance(exc, Permanent):
            base.reason = f"permanent: {exc.reason}"
            return base
        if attempt >= attempts:
            base.reason = f"exhausted: attempt {attempt} of {attempts} failed: {_describe(exc)}"
            return base
        delay = exc.delay if isinstance(exc, RetryLater) else job.retry.backoff.delay(attempt)
        return Result(Outcome.RETRY, task.delivery, job.name, task.job_id, delay=delay,
                      reason=_describe(exc), error=exc)

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
    def settle(self, backend: Backend, result: Result) -> None:
        """Apply a result to the backend the delivery came from, and log it."""
        delivery = result.delivery
        if result.outcome is Outcome.ACK:
            backend.ack(delivery)
        elif result.outcome is Outcome.RETRY:
            assert result.delay is not None
            log.warning("job %s %s attempt %d failed (%s); retrying in %.3gs", result.job_type,
                        result.job_id, delivery.attempt, result.reason,
                        result.delay.total_seconds())
            backend.retry(delivery, result.delay)
        elif result.outcome is Outcome.HOP:
            assert result.delay is not None
            max_delay = backend.capabilities.max_delay
            delay = result.delay if max_delay is None else min(result.delay, max_delay)
            backend.hop(delivery, delay)
        else:
            log.error("job %s %s dead-lettered: %s", result.job_type or "?",
                      result.job_id or delivery.message_id, result.reason)
            backend.dead_letter(delivery, result.reason or "dead-lettered")
