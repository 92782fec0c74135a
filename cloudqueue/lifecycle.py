"""The one path every delivery takes, and the pieces that hook into it.

    receive ──> prepare ──> middleware.run( job ) ──> settle ──> middleware.settled / app.on(...)
                  │                                    │
                  └─ poison / not due yet ─────────────┘  (one place decides, one place applies)

- ``Reason`` / ``ReasonKind``: why a message ends where it does, as a kind plus text.
- ``Middleware``: hooks around enqueue, around the run of a job, and after each settle.
- ``Batch``: the record loop function shims share (deadline margin, FIFO group blocking,
  giving back what was not started); the Lambda and Google shims are thin around it.

Order rules. Middleware run in list order around enqueue and around a run: the first in
``App(middleware=[...])`` is the outermost, so it sees what the others did. ``settled``
hooks and ``app.on`` callbacks run after the backend applied the outcome, middleware first
in list order, then the callbacks in the order they were added. A hook that raises is
logged and never changes the fate of the message: a job that ran is settled by what the
job did; a middleware that fails before the job runs fails that attempt (retried by the
job's policy, so a persistent fault ends in dead letters with the reason, never in a loop
or a lost message).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends.base import Backend, Delivery, OutgoingMessage
    from .dispatch import Dispatcher, Result, Task

__all__ = ["EVENTS", "Batch", "Middleware", "Outcome", "Reason", "ReasonKind"]

log = logging.getLogger("cloudqueue")


class Outcome(enum.Enum):
    """What becomes of a delivery."""

    #: the job succeeded: the message is removed
    ACK = "ack"
    #: the job failed with attempts left: the message comes back after a backoff
    RETRY = "retry"
    #: poison, permanent or exhausted: the message moves to dead letters with the reason
    DEAD_LETTER = "dead_letter"
    #: not due yet: sent on with the time left
    HOP = "hop"
    #: middleware acknowledged it without running the job
    SKIP = "skip"
    #: middleware gave it back for later without running the job
    DEFER = "defer"
    #: given back unstarted (shutdown, interrupt, deadline, FIFO hold-back)
    RELEASE = "release"


#: outcomes that leave the message in the queue, to be delivered again
STAYS = frozenset({Outcome.RETRY, Outcome.DEFER, Outcome.RELEASE})


class ReasonKind(str, enum.Enum):
    """Why a message left the normal path."""

    #: not an envelope, an unknown job type, or a payload that fails its model
    POISON = "poison"
    #: the job raised ``cq.Permanent``
    PERMANENT = "permanent"
    #: the job failed on its last attempt
    EXHAUSTED = "exhausted"
    #: the platform gave up on it (a retry duration or delivery limit ran out)
    EXPIRED = "expired"
    #: received too many times without being settled (a consumer died or timed out)
    UNSETTLED = "unsettled"
    #: an attempt failed and will be retried
    FAILED = "failed"
    #: middleware acknowledged it without running the job
    SKIPPED = "skipped"
    #: middleware or the consumer gave it back without running it
    DEFERRED = "deferred"
    #: a reason written by something else
    OTHER = "other"


_BY_PREFIX = {kind.value: kind for kind in ReasonKind}
#: spellings written before reasons had kinds, or by the queues themselves
_ALIASES = {"max receives exceeded": ReasonKind.UNSETTLED}


@dataclass(frozen=True, slots=True)
class Reason:
    """A kind and a text; ``str(reason)`` is ``"<kind>: <text>"``, as dead letters store it."""

    kind: ReasonKind
    text: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.text}"

    @classmethod
    def parse(cls, stored: str) -> Reason:
        """Read a stored reason back (``OTHER`` when it names no kind)."""
        head, sep, rest = stored.partition(":")
        head = head.strip()
        kind = _BY_PREFIX.get(head) or _ALIASES.get(head)
        if kind is None or not sep:
            return cls(kind or ReasonKind.OTHER, stored if kind is None else rest.strip())
        return cls(kind, rest.strip())


class StepFailed(Exception):
    """Raised by one of the library's own run steps (a flow recording its child's end)
    after the job ran, when the delivery must not be acknowledged: the delivery's outcome
    is ``error``'s (a retry, or dead letters for ``Permanent``), not the job's success.
    A middleware's own exception after the job ran leaves the job's outcome standing."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Middleware:
    """Base for middleware: override any of the methods; the others cost nothing.

    Example::

        class Timing(cq.Middleware):
            def run(self, task, call_next):
                started = time.perf_counter()
                try:
                    return call_next()
                finally:
                    print(task.job.name, time.perf_counter() - started)

        app = cq.App("shop", middleware=[Timing()])
    """

    def enqueue(self, messages: Sequence[OutgoingMessage],
                call_next: Callable[[Sequence[OutgoingMessage]], list[str]]) -> list[str]:
        """Around sending: see (and replace, e.g. with ``dataclasses.replace``) each
        outgoing message, then ``return call_next(messages)``: the job ids sent."""
        return call_next(messages)

    def run(self, task: Task, call_next: Callable[[], Any]) -> Any:
        """Around one run of a job: ``return call_next()`` runs it (and raises what it raised).

        Raise ``cq.Skip`` to acknowledge the message without running the job, or
        ``cq.Defer(delay)`` to give it back without spending an attempt. ``task`` has
        ``job``, ``payload``, ``job_id``, ``delivery`` (``attempt``) and ``key``.
        """
        return call_next()

    def settled(self, result: Result) -> None:
        """After the outcome was applied to the queue: ``result.outcome`` (ack, retry,
        dead letter, hop, skip, defer, release), ``result.reason`` (kind and text),
        ``result.delivery.attempt``, ``result.duration`` (seconds the job ran, or None),
        ``result.applied`` (False: the queue delivers the message again)."""

    def flush(self) -> None:
        """Write out whatever this middleware buffered (metrics added up per invocation):
        called once at the end of each function shim batch (one invocation or request)
        and when a worker stops."""


#: the names ``app.on`` takes, and what each is called for
EVENTS = {
    "completed": "a job ran and succeeded",
    "failed": "a job ran and raised (retried or dead-lettered after)",
    "retrying": "a failed job will be retried",
    "dead_lettered": "a message went to dead letters (poison, permanent, exhausted)",
    "stalled": "a message could not be settled because its visibility ran out first",
}


def overrides(middleware: Sequence[Middleware], name: str) -> list[Any]:
    """The bound ``name`` methods of the middleware that override the base's."""
    base = getattr(Middleware, name)
    return [getattr(m, name) for m in middleware if getattr(type(m), name) is not base]


class Batch:
    """The record loop a function shim runs for one event.

    Each delivery goes prepare -> run -> settle through the dispatcher, in order. Once
    the clock reaches ``stop_at`` no further delivery is started; a delivery whose FIFO
    group already had one that stays in the queue is held back unstarted (order per group
    holds). Everything not started is given back in one ``release_many`` call.

    Returns from ``run`` the deliveries that stay in the queue, for the platform to
    deliver again (a partial batch response, or a non-2xx answer): those whose outcome
    leaves them there (retry, defer, release; a hop on a FIFO queue, which hides the
    message rather than sending a copy), those the backend could not settle, and those
    ``kept`` says the backend left in place.
    """

    __slots__ = ("backend", "dispatcher", "kept", "stop_at")

    def __init__(self, dispatcher: Dispatcher, backend: Backend, *, stop_at: float = float("inf"),
                 kept: Callable[[Delivery], bool] | None = None) -> None:
        self.dispatcher = dispatcher
        self.backend = backend
        self.stop_at = stop_at
        self.kept = kept

    def run(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        dispatcher, backend = self.dispatcher, self.backend
        dispatcher.refresh()  # successes logged at INFO are settled (and timed) one by one
        handle, settle = dispatcher.handle, dispatcher.settle
        now = dispatcher.app.clock.time
        stop_at = self.stop_at
        ack = Outcome.ACK
        fifo_hop_stays = backend.capabilities.fifo
        kept = self.kept
        stays: list[Delivery] = []
        unstarted: list[Delivery] = []
        blocked: set[str] = set()
        for index, delivery in enumerate(deliveries):
            if now() >= stop_at:
                unstarted.extend(deliveries[index:])
                log.warning("stopping early: the invocation's deadline is near; %d record(s) not "
                            "started go back to the queue", len(deliveries) - index)
                break
            group = delivery.ordering_key
            if group is not None and group in blocked:
                unstarted.append(delivery)
                continue
            result = handle(delivery, quiet=True)
            if result is None:
                continue  # a success nothing observes needs no call: the platform acks it
            outcome = result.outcome
            applied = settle(backend, result)
            if outcome is ack and applied:
                continue
            if not applied or outcome in STAYS or (outcome is Outcome.HOP and fifo_hop_stays) or (
                    kept is not None and kept(delivery)):
                stays.append(delivery)
                if group is not None:
                    blocked.add(group)
        if unstarted:
            dispatcher.give_back(backend, unstarted)
            stays.extend(unstarted)
        if dispatcher.buffered:  # one invocation, one write of what middleware buffered
            dispatcher.flush()
        return stays


