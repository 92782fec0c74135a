"""The seam between cloudqueue and a queue service.

A backend moves bytes. It never parses a job, runs one or decides its fate: the
dispatcher does that and tells the backend what to do with each delivery.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._errors import UnsupportedFeature
from ..clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from ..lifecycle import Reason, ReasonKind


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can honour; the core checks options against this before sending.

    Attributes:
        max_delay: longest delay one send can carry (None: unlimited).
        delay_hops: whether longer delays may hop: the envelope carries ``cqnotbefore``
            and a consumer that receives it early sends it on with the remaining delay.
        max_message_size: largest message body in bytes.
        max_batch: most messages one ``send`` call takes (the core chunks above this).
        fifo: messages of one ordering key are delivered in order.
        dedup: the backend drops a second send with the same idempotency key.
        pull: ``receive`` works (a worker can consume).
        push: the platform pushes messages to a function.
        visibility: ``extend_visibility`` works (long jobs can hold their message).
        uncounted_release: ``release`` and ``defer`` leave the attempt count as it was;
            where they do not (the queue counts every receive), the dispatcher keeps
            count of the receives that never ran and takes them off the attempt.
        priority: the queue orders waiting messages by a per-message ``priority``
            (higher first); elsewhere priorities are separate queues
            (``cq.App(queues=...)`` and ``app.worker(queues=[...])``).
    """

    max_delay: timedelta | None = None
    delay_hops: bool = False
    max_message_size: int = 256 * 1024
    max_batch: int = 100
    fifo: bool = False
    dedup: bool = False
    pull: bool = True
    push: bool = False
    visibility: bool = False
    uncounted_release: bool = False
    priority: bool = False


@dataclass(frozen=True, slots=True)
class QueueStats:
    """How many messages are where. ``None`` where the backend cannot tell (never 0).

    Attributes:
        waiting: due and not received.
        in_flight: received and not settled.
        delayed: not due yet (a delay, or a retry's backoff).
        dead_lettered: in dead letters.
        oldest_age: how long the oldest message in the queue has been there.
        completed: messages acknowledged since the queue was made, a running total kept by
            the queue itself (so every process reading it sees the same count).
        failed: deliveries settled as a retry or a dead letter since the queue was made,
            a running total like ``completed``.
    """

    waiting: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    dead_lettered: int | None = None
    oldest_age: timedelta | None = None
    completed: int | None = None
    failed: int | None = None


_NO_DELAY = timedelta(0)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One serialized job on its way to the queue.

    Attributes:
        body: the encoded envelope.
        job_id: the envelope's ``id``.
        job_type: the envelope's ``type`` (backends may copy it into attributes).
        delay: how long the queue should hold it back (within ``max_delay``).
        idempotency_key: for backends that deduplicate on send.
        ordering_key: FIFO group / ordering key.
        max_attempts: the job's attempts, for backends that count receives themselves.
        queue: the name of the app's queue it goes to (None: the app's default queue).
        priority: for backends with ``capabilities.priority``: higher runs first
            (None: 0).
    """

    body: bytes
    job_id: str
    job_type: str
    delay: timedelta = timedelta(0)
    idempotency_key: str | None = None
    ordering_key: str | None = None
    max_attempts: int | None = None
    queue: str | None = None
    priority: int | None = None

    def __init__(self, body: bytes, job_id: str, job_type: str, delay: timedelta = _NO_DELAY,
                 idempotency_key: str | None = None, ordering_key: str | None = None,
                 max_attempts: int | None = None, queue: str | None = None,
                 priority: int | None = None) -> None:
        # the slots' own setters: a frozen dataclass's generated __init__ goes through
        # object.__setattr__ per field, several times slower, once per enqueued job
        _set_body(self, body)
        _set_job_id(self, job_id)
        _set_job_type(self, job_type)
        _set_delay(self, delay)
        _set_idempotency_key(self, idempotency_key)
        _set_ordering_key(self, ordering_key)
        _set_max_attempts(self, max_attempts)
        _set_queue(self, queue)
        _set_priority(self, priority)


(_set_body, _set_job_id, _set_job_type, _set_delay, _set_idempotency_key, _set_ordering_key,
 _set_max_attempts, _set_queue, _set_priority) = (
    OutgoingMessage.__dict__[f.name].__set__ for f in fields(OutgoingMessage))


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


class Delivery:
    """One received message, as the dispatcher sees it.

    Attributes:
        body: the raw bytes received.
        attempt: 1-based attempt number, as the queue counts it (never from the body).
        message_id: the backend's id for the message.
        handle: whatever the backend needs to ack/retry/dead-letter it.
        ordering_key: FIFO group of the message, if any.
        deadline: when the runtime will stop this delivery (None: no limit known).
        attributes: the message's string attributes, as the producer set them.
        visibility: how long the receive hid the message (None: unknown); a worker's
            heartbeat extends it well before this runs out.
        lease_until: until when (on the backend's clock) this consumer holds the message;
            backends that cannot tell a stale handle from a current one keep it, and
            refuse to settle once it has passed (``StaleDelivery``).
        raw: the platform's own record or message, for the backend that settles it.
        platform_trace: the trace contexts the platform delivered this message under, as
            the header values it sent (W3C ``traceparent``, X-Ray ``Root=...;Parent=...``,
            ``X-Cloud-Trace-Context``); tracing middleware joins them (``cloudqueue.otel``).
    """

    __slots__ = ("attempt", "attributes", "body", "deadline", "handle", "lease_until", "message_id",
                 "ordering_key", "platform_trace", "raw", "visibility")

    def __init__(self, body: bytes, attempt: int, message_id: str, handle: Any = None,
                 ordering_key: str | None = None, deadline: datetime | None = None,
                 attributes: Mapping[str, str] = _NO_ATTRIBUTES, visibility: timedelta | None = None,
                 lease_until: float | None = None, raw: Any = None,
                 platform_trace: tuple[str, ...] = ()) -> None:
        self.body = body
        self.attempt = attempt
        self.message_id = message_id
        self.handle = handle
        self.ordering_key = ordering_key
        self.deadline = deadline
        self.attributes = attributes
        self.visibility = visibility
        self.lease_until = lease_until
        self.raw = raw
        self.platform_trace = platform_trace

    def __repr__(self) -> str:
        return (f"Delivery(message_id={self.message_id!r}, attempt={self.attempt}, "
                f"ordering_key={self.ordering_key!r}, body={self.body[:60]!r})")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message in dead letters, with why it is there; ``body`` is the original message.

    ``reason`` is the text stored with it (``"<kind>: <text>"``); ``kind`` reads the kind.
    """

    message_id: str
    body: bytes
    reason: str
    job_type: str | None = None
    dead_lettered_at: datetime | None = None
    attempts: int | None = None

    @property
    def kind(self) -> ReasonKind:
        """Why it is there: poison, permanent, exhausted, ... (``cq.ReasonKind``)."""
        from ..lifecycle import Reason

        return Reason.parse(self.reason).kind


class Backend(ABC):
    """A queue. Subclasses implement the primitives; sync, thread-safe.

    ``send`` must be safe to retry. ``ack``, ``retry``, ``defer``, ``release``, ``hop``
    and ``dead_letter`` are called at most once per delivery, by the one settle step
    (``Dispatcher.settle``). Any of them raises ``StaleDelivery`` when the delivery's
    handle is no longer this consumer's (its visibility ran out and the queue may have
    handed the message to someone else): then nothing is changed.
    """

    #: the URL scheme this backend registers under
    scheme: str = ""
    #: the clock deliveries and delays are measured with
    clock: Clock = SYSTEM_CLOCK
    #: how many ``send`` calls of one ``enqueue_many`` may run at once (1: one after another;
    #: a backend whose send is an in-process call gains nothing from more)
    send_concurrency: int = 8

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend can honour."""

    @abstractmethod
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Send messages (at most ``capabilities.max_batch``); return their job ids.

        A duplicate idempotency key returns the id of the job already queued.
        """

    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        """Take up to ``max_messages`` due messages, waiting up to ``wait`` for the first.

        ``visibility`` hides them for that long instead of the queue's own setting; each
        delivery's ``visibility`` says what was in force.
        """
        raise UnsupportedFeature(f"the {self.scheme or type(self).__name__} backend is push-only; "
                                 "it cannot be consumed by a worker")

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The job is done: remove the message."""

    @abstractmethod
    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        """Make the message come back after ``delay``; the attempt count goes on."""

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        """Move the message, intact, to dead letters with ``reason`` (``str(reason)`` to store)."""

    def release(self, delivery: Delivery) -> None:
        """Give back a message that was received but never started, at once."""
        self.retry(delivery, timedelta(0))

    def release_many(self, deliveries: Sequence[Delivery]) -> None:
        """Give back several unstarted messages (backends with a batch call override this)."""
        for delivery in deliveries:
            self.release(delivery)

    def defer(self, delivery: Delivery, delay: timedelta) -> None:
        """Make an unstarted message come back after ``delay``, spending no attempt where the
        queue allows it (queues that count every receive count this one too)."""
        self.retry(delivery, delay)

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        """Send a delayed message on with ``delay`` left, then remove this copy."""
        self.send([OutgoingMessage(body=delivery.body, job_id=delivery.message_id, job_type="",
                                   delay=delay, ordering_key=delivery.ordering_key)])
        self.ack(delivery)

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        """Keep a long-running delivery hidden for ``timeout`` more."""
        raise UnsupportedFeature(f"the {self.scheme or type(self).__name__} backend cannot "
                                 "extend a message's visibility")

    def stats(self) -> QueueStats:
        """Counts of waiting, in-flight, delayed and dead-lettered messages."""
        return QueueStats()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """List (peek at) dead letters without removing them."""
        raise UnsupportedFeature(f"the {self.scheme or type(self).__name__} backend cannot list dead letters")

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on the queue; return how many."""
        raise UnsupportedFeature(f"the {self.scheme or type(self).__name__} backend cannot redrive")

    def purge_dead_letters(self) -> int:
        """Delete every dead letter; return how many (None-able backends return -1)."""
        raise UnsupportedFeature(f"the {self.scheme or type(self).__name__} backend cannot purge dead letters")

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections; the backend is not used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme}>"
