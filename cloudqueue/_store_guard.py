"""The run step that makes a guarded job run at most once per key (``App(store=...)``).

It is the innermost ``run`` hook of the dispatcher (so every consumer takes it, and the
one settle path applies what it decides):

- claim the key (a conditional write) with a lease tied to the delivery: its function
  deadline, else the visibility its receive used; the worker's heartbeat extends the
  lease whenever it extends the message, so a long job's claim never lapses while it runs;
- completed already: ``Skip`` (acked without running, reason "duplicate of completed ...");
- held by a live claim: ``Defer`` until that claim's lease runs out (no attempt spent);
- granted: the claim's run count becomes the delivery's attempt (exact: receives that
  never ran are not in it), the job runs, and success completes the record (with the
  return value when the job keeps it); a failure releases the claim, or forgets the key
  when the message goes to dead letters (so a redrive runs it afresh).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._errors import Defer, Skip
from .lifecycle import Outcome
from .store import KEYED_ONLY, Once, Record, Status, Store, record_key

if TYPE_CHECKING:
    from .app import App
    from .backends.base import Delivery
    from .dispatch import Task

__all__ = ["Idempotency"]

log = logging.getLogger("cloudqueue")

#: the claim's lease when the delivery tells neither a deadline nor a visibility
DEFAULT_LEASE = timedelta(minutes=5)
#: a duplicate held back by a live claim comes back within these bounds
_MIN_DEFER = timedelta(seconds=1)
_MAX_DEFER = timedelta(minutes=10)


class Idempotency:
    """The app's store and the claims its consumers hold (one per running guarded job)."""

    def __init__(self, app: App, store: str | Store) -> None:
        self.app = app
        self._spec = store
        self._store: Store | None = store if isinstance(store, Store) else None
        #: id(delivery) -> (store key, token), for the heartbeat
        self._held: dict[int, tuple[str, str]] = {}

    @property
    def store(self) -> Store:
        if self._store is None:
            from .store import from_url

            assert isinstance(self._spec, str)
            self._store = from_url(self._spec)
        return self._store

    @property
    def url(self) -> str | None:
        return self._spec if isinstance(self._spec, str) else None

    def policy(self, task: Task) -> Once | None:
        """How ``task``'s job is guarded, or None when it is not."""
        once = task.job.once
        if once is False:
            return None
        if once is None:
            return KEYED_ONLY if task.key is not None else None
        assert isinstance(once, Once)
        return once if task.key is not None or once.by_job_id else None

    def key(self, task: Task) -> str:
        return record_key(self.app.name, idempotency_key=task.key, job_id=task.job_id)

    def record(self, *, idempotency_key: str | None = None, job_id: str | None = None) -> Record | None:
        """The live record of a key or a job id, or None."""
        key = record_key(self.app.name, idempotency_key=idempotency_key, job_id=job_id)
        return self.store.get(key, now=self.app.clock.now())

    # -- the run hook ------------------------------------------------------------------
    def run(self, task: Task, call_next: Callable[[], Any]) -> Any:
        policy = self.policy(task)
        if policy is None:
            return call_next()
        store, clock, delivery = self.store, self.app.clock, task.delivery
        key = self.key(task)
        now = clock.now()
        token = os.urandom(12).hex()
        claim = store.claim(key, token=token, now=now, lease_until=now + lease(delivery, now),
                            expires_at=now + policy.ttl, job_type=task.job.name, job_id=task.job_id)
        if not claim.granted:
            raise self._refusal(task, key, claim.record, now)
        delivery.attempt = claim.record.runs  # the runs of this key, not the queue's receives
        held = self._held
        held[id(delivery)] = (key, token)
        try:
            value = call_next()
        except BaseException as exc:
            held.pop(id(delivery), None)
            self._after_failure(task, key, token, exc)
            raise
        held.pop(id(delivery), None)
        self._complete(task, key, token, policy, value)
        return value

    @staticmethod
    def _refusal(task: Task, key: str, record: Record, now: datetime) -> Exception:
        holder = f"job {record.job_type or '?'} {record.job_id or '?'}"
        if record.status is Status.COMPLETED:
            when = record.completed_at.isoformat(timespec="seconds") if record.completed_at else "?"
            return Skip(f"duplicate of completed {holder} (store key {key!r}, completed at {when})")
        until = record.lease_until or now
        wait = min(max(until - now, _MIN_DEFER), _MAX_DEFER)
        return Defer(wait, f"duplicate of {holder} in progress (store key {key!r}; its claim lapses "
                           f"at {until.isoformat(timespec='seconds')}); retried in {wait}, no attempt spent")

    def _complete(self, task: Task, key: str, token: str, policy: Once, value: Any) -> None:
        stored = _json(task, value) if policy.keep_result else None
        now = self.app.clock.now()
        try:
            kept = self.store.complete(key, token=token, now=now, expires_at=now + policy.ttl, value=stored)
        except Exception:  # the job ran and succeeded: its outcome stands; the claim lapses
            log.exception("job %s %s succeeded but its store record %r could not be completed; a "
                          "duplicate delivered after the claim lapses runs again", task.job.name,
                          task.job_id, key)
            return
        if not kept:
            log.warning("job %s %s succeeded after its claim on %r lapsed (another consumer may "
                        "hold it now); keep jobs within their lease or run them in a worker, whose "
                        "heartbeat extends it", task.job.name, task.job_id, key)

    def _after_failure(self, task: Task, key: str, token: str, exc: BaseException) -> None:
        outcome = self.app.dispatcher.failed(task, exc).outcome
        try:
            if outcome is Outcome.SKIP:  # the job itself asked to be acknowledged: it is done
                now = self.app.clock.now()
                policy = self.policy(task) or KEYED_ONLY
                self.store.complete(key, token=token, now=now, expires_at=now + policy.ttl)
            else:  # retried: the run count stays; dead-lettered: a redrive starts over
                self.store.release(key, token=token, forget=outcome is Outcome.DEAD_LETTER)
        except Exception:
            log.exception("job %s %s: could not release its store record %r; it lapses with "
                          "its lease", task.job.name, task.job_id, key)

    # -- the worker's heartbeat --------------------------------------------------------
    def extend(self, delivery: Delivery, window: timedelta) -> None:
        """Move the claim a running delivery holds (if any) to ``window`` from now."""
        held = self._held.get(id(delivery))
        if held is None:
            return
        key, token = held
        if not self.store.extend(key, token=token, lease_until=self.app.clock.now() + window):
            log.warning("the store claim on %r was lost while its job ran (it had lapsed and "
                        "another consumer took it)", key)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def lease(delivery: Delivery, now: datetime) -> timedelta:
    """How long a claim holds without a heartbeat: until the function's deadline, else the
    visibility the receive used (when the message itself would come back)."""
    if delivery.deadline is not None:
        return max(delivery.deadline - now, _MIN_DEFER)
    if delivery.visibility is not None:
        return delivery.visibility
    return DEFAULT_LEASE


def _json(task: Task, value: Any) -> str | None:
    if value is None:
        return None
    from pydantic_core import to_json

    try:
        return to_json(value).decode()
    except Exception as exc:
        log.warning("job %s %s: its return value is not JSON-serializable (%s); the record is "
                    "completed without it", task.job.name, task.job_id, exc)
        return None
