"""The Pub/Sub backend: publish to a topic, pull from a subscription, dead letters on a topic.

URL: ``pubsub://PROJECT/TOPIC?subscription=SUB&dead_letter_topic=TOPIC`` with options
``dead_letter_subscription`` (where dead letters are listed from; default: the dead-letter
topic's own name), ``ordering=true`` (the subscription has message ordering on: ordering
keys are honoured), ``emulator=HOST:PORT`` (default: ``$PUBSUB_EMULATOR_HOST``),
``push_audience`` and ``push_service_account`` (what the push shim verifies),
``monitoring=HOST:PORT`` (a Cloud Monitoring server over plain HTTP, for tests; default:
Google's, or none with an emulator; ``monitoring=off`` turns it off), and
``timeout`` (seconds: the longest any one call, retries included, may take; default 30 s;
past it the call raises ``BackendUnavailable`` naming the endpoint).

Semantics, honestly:

- No delivery delay exists in Pub/Sub, so a delayed enqueue raises ``UnsupportedFeature``
  (``capabilities.max_delay`` is zero): use Cloud Tasks for delays.
- The attempt is the message's ``deliveryAttempt``, which Pub/Sub counts only on a
  subscription with a dead-letter policy; without one every delivery is attempt 1 (logged
  once), so a failing job is retried until the message expires.
- ``retry(delivery, delay)`` sets the ack deadline to the job's backoff (at most 600 s):
  a pull worker gets the job's backoff. A push subscription answers non-2xx instead and
  gets the subscription's retry_policy (exponential, 10 s to 600 s by default).
- Permanent, poison and exhausted messages are published to the dead-letter topic with a
  ``cq_reason`` attribute, then acknowledged; the subscription's own dead-letter policy
  moves messages Pub/Sub gave up on (max delivery attempts).
- The first look at ``capabilities`` of a backend with a subscription checks that the
  subscription exists (``QueueNotFound`` otherwise, so a worker on a missing subscription
  stops at once with one line) and reads its ack deadline.
- Pub/Sub's API counts nothing, so ``stats()`` takes the backlog from Cloud Monitoring
  (``waiting``: the subscription's unacknowledged messages; ``oldest_age``; and
  ``dead_lettered``: the dead-letter subscription's), sampled every minute and a few
  minutes late, None where unknown; and from this process: messages it holds
  (``in_flight``) and retries it gave back that have not come back yet (``delayed``).
  ``run(until_empty=True)`` waits for all of them before it returns.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudqueue import CloudQueueError, ConfigurationError, QueueNotFound, UnsupportedFeature
from cloudqueue.backends.base import (
    Backend,
    Capabilities,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    QueueStats,
)
from cloudqueue.clock import SYSTEM_CLOCK, Clock, format_time, parse_time

from ._common import (
    ATTR_ATTEMPTS,
    ATTR_DEAD_AT,
    ATTR_ID,
    ATTR_KEY,
    ATTR_REASON,
    ATTR_SOURCE,
    ATTR_TYPE,
    DEFAULT_TIMEOUT,
    call_retry,
    parse_bool,
    parse_options,
    parse_timeout,
    require,
    translated,
    truncate,
)
from ._monitoring import OLDEST_UNACKED, UNDELIVERED, Monitoring

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient  # type: ignore[import-untyped]

    from cloudqueue import Reason

log = logging.getLogger("cloudqueue.gcp")

#: Pub/Sub's limit is 10 MB for data and attributes together; keep room for attributes
MAX_MESSAGE_SIZE = 10 * 1000 * 1000 - 64 * 1024
MAX_ACK_DEADLINE = timedelta(seconds=600)
#: how long a pull that should not wait may take (the service answers sooner when it can)
_SHORT_PULL = timedelta(seconds=0.5)
#: attributes Pub/Sub adds when its dead-letter policy moves a message
_NATIVE_PREFIX = "CloudPubSubDeadLetter"
_OPTIONS = ("subscription", "dead_letter_topic", "dead_letter_subscription", "ordering", "emulator",
            "push_audience", "push_service_account", "timeout", "monitoring")
PUBSUB_ENDPOINT = "pubsub.googleapis.com"
_warned_no_attempts = False
#: how long past its due time a retry this process gave back still counts as pending (it
#: may come back to another consumer instead; after this it is no longer waited for)
_PENDING_GRACE = 30.0
#: messages one pull takes when a receive asks for fewer; the rest wait in a buffer for the
#: next receive at most _BUFFER_AGE seconds, then go back to Pub/Sub
_PREFETCH = 100
_BUFFER_AGE = 1.0


def _clients(emulator: str | None, timeout: timedelta) -> tuple[Any, Any]:
    pubsub = require("google.cloud.pubsub_v1")
    publisher_options = pubsub.types.PublisherOptions(enable_message_ordering=True, retry=call_retry(timeout),
                                                      timeout=timeout.total_seconds())
    batching = pubsub.types.BatchSettings(max_messages=1000, max_bytes=9_000_000, max_latency=0.01)
    if emulator is None:
        return (pubsub.PublisherClient(batch_settings=batching, publisher_options=publisher_options),
                pubsub.SubscriberClient())
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return (pubsub.PublisherClient(batch_settings=batching, publisher_options=publisher_options,
                                   transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator))),
            pubsub.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator))))


class _Clients:
    """Publisher and subscriber, created on first use (so opening a URL imports no SDK)."""

    def __init__(self, publisher: PublisherClient | None, subscriber: SubscriberClient | None,
                 emulator: str | None, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        self._publisher = publisher
        self._subscriber = subscriber
        self._emulator = emulator
        self.timeout = timeout
        #: what errors name as the place that did not answer
        self.endpoint = emulator or PUBSUB_ENDPOINT
        self._lock = threading.Lock()
        self._retry: Any = None

    @property
    def retry(self) -> Any:
        """The bounded retry every idempotent call takes."""
        if self._retry is None:
            self._retry = call_retry(self.timeout)
        return self._retry

    def _build(self) -> None:
        with self._lock, translated(f"opening Pub/Sub clients for {self.endpoint}"):
            if self._publisher is None or self._subscriber is None:
                publisher, subscriber = _clients(self._emulator, self.timeout)
                self._publisher = self._publisher or publisher
                self._subscriber = self._subscriber or subscriber

    @property
    def publisher(self) -> Any:
        if self._publisher is None:
            self._build()
        return self._publisher

    @property
    def subscriber(self) -> Any:
        if self._subscriber is None:
            self._build()
        return self._subscriber

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
        if self._subscriber is not None:
            self._subscriber.close()


def publish_all(clients: _Clients, topic: str, items: Sequence[tuple[bytes, dict[str, str], str]],
                what: str) -> list[str]:
    """Publish ``(data, attributes, ordering_key)`` items through the batching publisher,
    waiting at most the clients' timeout for all of them."""
    publisher = clients.publisher
    futures: list[tuple[Future[str], str]] = []
    with translated(f"{what} at {clients.endpoint} (timeout {clients.timeout.total_seconds():g} s)"):
        for data, attributes, ordering_key in items:
            futures.append((publisher.publish(topic, data, ordering_key=ordering_key, **attributes),
                            ordering_key))
        ends = time.monotonic() + clients.timeout.total_seconds()
        ids = []
        for future, ordering_key in futures:
            try:
                ids.append(future.result(timeout=max(ends - time.monotonic(), 0.001)))
            except BaseException:
                if ordering_key:  # a failed ordered publish pauses its key until resumed
                    publisher.resume_publish(topic, ordering_key)
                raise
        return ids


def pull(clients: _Clients, subscription: str, max_messages: int, timeout: timedelta, what: str) -> list[Any]:
    """One synchronous pull; an empty list when nothing came within ``timeout``."""
    from google.api_core.exceptions import DeadlineExceeded

    with translated(f"{what} at {clients.endpoint}"):
        try:
            response = clients.subscriber.pull(
                request={"subscription": subscription, "max_messages": max(1, min(max_messages, 1000))},
                retry=None, timeout=min(timeout, clients.timeout).total_seconds())
        except DeadlineExceeded:
            return []
    return list(response.received_messages)


class _AckBatcher:
    """Acknowledgements sent in batches by one thread, as the streaming-pull client does.

    ``add`` returns at once; a thread sends what gathered (up to 2,500 ids a call) every
    few milliseconds. A lost acknowledgement only means a redelivery (at-least-once), and
    Pub/Sub's acknowledge tells nothing more than that either. ``flush`` waits until
    everything added was sent; the backend flushes on ``stats()`` and ``close()`` and at exit.
    """

    _LINGER = 0.005
    _MOST = 2500

    def __init__(self, clients: _Clients, subscription: str) -> None:
        self._clients = clients
        self._subscription = subscription
        self._ids: list[str] = []
        self._sending = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        atexit.register(_flush_at_exit, weakref.ref(self))

    def add(self, ack_id: str) -> None:
        with self._cond:
            self._ids.append(ack_id)
            if self._thread is None:  # started on demand; it ends after a second with nothing to send
                self._thread = threading.Thread(target=self._run, name="cloudqueue-pubsub-acks", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        clients = self._clients
        while True:
            with self._cond:
                if not self._ids and not self._closed:
                    self._cond.wait(timeout=1.0)
                if not self._ids:
                    self._thread = None
                    return
            time.sleep(self._LINGER)  # let acks of other consumers gather
            with self._cond:
                batch, self._ids = self._ids[:self._MOST], self._ids[self._MOST:]
                self._sending += len(batch)
            try:
                clients.subscriber.acknowledge(request={"subscription": self._subscription, "ack_ids": batch},
                                               retry=clients.retry, timeout=clients.timeout.total_seconds())
            except Exception as exc:  # the messages come back after their ack deadline
                log.warning("could not acknowledge %d message(s) on %s at %s (%s); Pub/Sub delivers them "
                            "again", len(batch), self._subscription, clients.endpoint, exc)
            finally:
                with self._cond:
                    self._sending -= len(batch)
                    self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._ids and not self._sending, timeout=timeout)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _flush_at_exit(batcher: weakref.ref[_AckBatcher]) -> None:
    found = batcher()
    if found is not None:
        found.flush(timeout=5.0)


class TopicDeadLetters:
    """Dead letters kept on a Pub/Sub topic, listed and taken back through a subscription."""

    def __init__(self, clients: _Clients, project: str, topic: str, subscription: str | None,
                 clock: Clock = SYSTEM_CLOCK, monitoring: Monitoring | None = None) -> None:
        self._clients = clients
        self.monitoring = monitoring
        self.topic = f"projects/{project}/topics/{topic}"
        self.subscription = f"projects/{project}/subscriptions/{subscription}" if subscription else None
        self.clock = clock

    def write(self, body: bytes, reason: str, attributes: dict[str, str], *, job_type: str | None,
              attempts: int | None) -> None:
        """Publish ``body`` intact to the dead-letter topic with why it is there."""
        attrs = {k: v for k, v in attributes.items() if not k.startswith(_NATIVE_PREFIX)}
        attrs[ATTR_REASON] = truncate(reason)
        attrs[ATTR_DEAD_AT] = format_time(self.clock.now())
        if job_type:
            attrs[ATTR_TYPE] = truncate(job_type)
        if attempts is not None:
            attrs[ATTR_ATTEMPTS] = str(attempts)
        publish_all(self._clients, self.topic, [(body, attrs, "")], f"publishing a dead letter to {self.topic}")

    def backlog(self) -> int | None:
        """How many dead letters wait, from Cloud Monitoring (None when unknown)."""
        if self.monitoring is None or self.subscription is None:
            return None
        return self.monitoring.latest(UNDELIVERED, self.subscription.rsplit("/", 1)[-1])

    def _listing(self) -> str:
        if self.subscription is None:
            raise UnsupportedFeature(
                f"dead letters on {self.topic} cannot be listed without a subscription; add "
                "dead_letter_subscription=<SUB> (Pub/Sub) or ?subscription=<SUB> to the dead_letter URL")
        return self.subscription

    def _pull_all(self, limit: int | None) -> list[Any]:
        """Pull (and hold) every dead letter up to ``limit``; the caller settles each."""
        name = self._listing()
        held: dict[str, Any] = {}
        empty_rounds = 0
        while (limit is None or len(held) < limit) and empty_rounds < 2:
            want = 1000 if limit is None else min(1000, limit - len(held))
            received = pull(self._clients, name, want, _SHORT_PULL, f"pulling dead letters from {name}")
            fresh = [m for m in received if m.message.message_id not in held]
            empty_rounds = 0 if fresh else empty_rounds + 1
            for received in fresh:
                held[received.message.message_id] = received
        return list(held.values())

    def _settle(self, ack: Sequence[str], nack: Sequence[str]) -> None:
        clients, name = self._clients, self._listing()
        subscriber, retry, seconds = clients.subscriber, clients.retry, clients.timeout.total_seconds()
        with translated(f"settling dead letters on {name} at {clients.endpoint}"):
            for start in range(0, len(ack), 1000):
                subscriber.acknowledge(request={"subscription": name, "ack_ids": ack[start:start + 1000]},
                                       retry=retry, timeout=seconds)
            for start in range(0, len(nack), 1000):
                subscriber.modify_ack_deadline(request={"subscription": name, "ack_ids": nack[start:start + 1000],
                                                        "ack_deadline_seconds": 0}, retry=retry, timeout=seconds)

    @staticmethod
    def _letter(received: Any) -> DeadLetter:
        message = received.message
        attrs = dict(message.attributes)
        reason = attrs.get(ATTR_REASON)
        attempts = attrs.get(ATTR_ATTEMPTS) or attrs.get(f"{_NATIVE_PREFIX}SourceDeliveryCount")
        if reason is None:
            reason = (f"exhausted: Pub/Sub gave up after {attempts or '?'} deliveries "
                      "(the subscription's dead-letter policy)")
        when = attrs.get(ATTR_DEAD_AT)
        return DeadLetter(message_id=message.message_id, body=bytes(message.data), reason=reason,
                          job_type=attrs.get(ATTR_TYPE),
                          dead_lettered_at=parse_time(when) if when else None,
                          attempts=int(attempts) if attempts and attempts.isdigit() else None)

    def list(self, limit: int = 100) -> list[DeadLetter]:
        """Peek: pull up to ``limit``, then give every one back at once."""
        held = self._pull_all(limit)
        self._settle([], [r.ack_id for r in held])
        return [self._letter(r) for r in held]

    def take(self, message_ids: Sequence[str] | None,
             resend: Callable[[bytes, dict[str, str]], None]) -> int:
        """Resend chosen dead letters (all when None) with ``resend``, then remove them."""
        held = self._pull_all(None)
        by_id = {r.message.message_id: r for r in held}
        if message_ids is not None:
            missing = [m for m in message_ids if m not in by_id]
            if missing:
                self._settle([], [r.ack_id for r in held])
                raise QueueNotFound(f"no dead letter with id {', '.join(missing)} on {self.topic}")
        chosen = list(by_id) if message_ids is None else list(dict.fromkeys(message_ids))
        done: list[str] = []
        try:
            for mid in chosen:
                message = by_id[mid].message
                attrs = {k: v for k, v in message.attributes.items()
                         if k not in (ATTR_REASON, ATTR_DEAD_AT, ATTR_ATTEMPTS)
                         and not k.startswith(_NATIVE_PREFIX)}
                resend(bytes(message.data), attrs)
                done.append(mid)
        finally:
            self._settle([by_id[m].ack_id for m in done],
                         [r.ack_id for m, r in by_id.items() if m not in done])
        return len(done)

    def purge(self) -> int:
        held = self._pull_all(None)
        self._settle([r.ack_id for r in held], [])
        return len(held)


class PubSubBackend(Backend):
    """Publish to a topic; pull, ack and dead-letter through a subscription.

    Args:
        project: the Google Cloud project id.
        topic: the topic jobs are published to.
        subscription: the subscription a pull worker consumes (None: publish only).
        dead_letter_topic: where Permanent, poison and exhausted messages go.
        dead_letter_subscription: a subscription on the dead-letter topic, to list and
            redrive (default: the dead-letter topic's own name).
        ordering: the subscription has message ordering enabled (ordering keys honoured).
        emulator: HOST:PORT of a Pub/Sub emulator (default: ``$PUBSUB_EMULATOR_HOST``).
        timeout: the longest one call (retries included) may take before ``BackendUnavailable``.
        monitoring: where ``stats()`` reads backlog numbers: HOST:PORT of a Cloud Monitoring
            server over plain HTTP, ``"google"`` (Google's), or ``"off"``. Default: Google's,
            or off with an emulator (which has no Monitoring).
        publisher / subscriber: injected ``google.cloud.pubsub_v1`` clients.
    """

    scheme = "pubsub"

    def __init__(self, project: str, topic: str, *, subscription: str | None = None,
                 dead_letter_topic: str | None = None, dead_letter_subscription: str | None = None,
                 ordering: bool = False, emulator: str | None = None,
                 publisher: PublisherClient | None = None, subscriber: SubscriberClient | None = None,
                 clock: Clock = SYSTEM_CLOCK, timeout: timedelta = DEFAULT_TIMEOUT,
                 monitoring: str | None = None) -> None:
        if not project or not topic:
            raise ConfigurationError("pubsub backend needs a project and a topic")
        self.project = project
        self.topic = topic
        self.topic_path = f"projects/{project}/topics/{topic}"
        self.subscription_path = f"projects/{project}/subscriptions/{subscription}" if subscription else None
        self.clock = clock
        self._clients = _Clients(publisher, subscriber, emulator, timeout)
        self._monitoring = monitoring_for(project, monitoring, emulator, timeout)
        self._dead = TopicDeadLetters(self._clients, project, dead_letter_topic,
                                      dead_letter_subscription or dead_letter_topic, clock) \
            if dead_letter_topic else None
        if self._dead is not None:
            self._dead.monitoring = self._monitoring
        self._caps = Capabilities(max_delay=timedelta(0), delay_hops=False,
                                  max_message_size=MAX_MESSAGE_SIZE, max_batch=1000, fifo=ordering,
                                  dedup=False, pull=subscription is not None, push=True,
                                  visibility=True)
        self._checked = subscription is None
        self._ack_deadline: timedelta | None = None
        # what this process knows is not yet done: held (received, unsettled) and given back
        self._track = threading.Lock()
        self._holding: dict[str, float] = {}  # message id -> monotonic time its hold runs out
        self._acks: _AckBatcher | None = None
        self._buffer: deque[tuple[float, Delivery]] = deque()
        self._buffer_lock = threading.Lock()
        self._janitor: threading.Timer | None = None
        self._pending: dict[str, float] = {}  # message id -> monotonic time it is due back
        self._pulled = False  # this process consumes: held and given-back counts mean something

    @property
    def capabilities(self) -> Capabilities:
        if not self._checked:
            self._check_subscription()
        return self._caps

    @property
    def declared_capabilities(self) -> Capabilities:
        """What the URL says, without the first look at the subscription (no network, no SDK):
        for a push shim, whose deliveries never come from a pull."""
        return self._caps

    def _check_subscription(self) -> None:
        """Fail at once on a missing subscription; learn its ack deadline.

        Raises:
            QueueNotFound: the subscription does not exist.
        """
        from google.api_core import exceptions as gexc

        name, clients = self._subscription(), self._clients
        try:
            with translated(f"reading subscription {name} at {clients.endpoint}"):
                try:
                    found = clients.subscriber.get_subscription(
                        request={"subscription": name}, retry=clients.retry, timeout=clients.timeout.total_seconds())
                except gexc.NotFound:
                    raise QueueNotFound(
                        f"Pub/Sub subscription {name} does not exist (at {clients.endpoint}); create it "
                        "(cloudqueue_gcp.admin.ensure_subscription, or the gcp-pubsub Terraform module)") from None
        except QueueNotFound:
            raise
        except CloudQueueError as exc:
            # a publisher may not read subscriptions, or the service is not reachable yet:
            # nothing learnt, and the calls that need the subscription say what is wrong
            log.debug("could not read subscription %s: %s", name, exc)
        else:
            if found.ack_deadline_seconds:
                self._ack_deadline = timedelta(seconds=found.ack_deadline_seconds)
        self._checked = True

    @property
    def publisher(self) -> PublisherClient:
        client: PublisherClient = self._clients.publisher
        return client

    @property
    def subscriber(self) -> SubscriberClient:
        client: SubscriberClient = self._clients.subscriber
        return client

    # -- producing -----------------------------------------------------------------------
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        items = []
        for out in messages:
            if out.delay > timedelta(0):
                raise UnsupportedFeature(f"job {out.job_type!r}: Pub/Sub cannot delay a message; "
                                         "use the cloudtasks backend for delayed jobs")
            attributes = {ATTR_TYPE: out.job_type, ATTR_ID: out.job_id}
            if out.idempotency_key is not None:
                attributes[ATTR_KEY] = truncate(out.idempotency_key)
            items.append((out.body, attributes, out.ordering_key or ""))
        publish_all(self._clients, self.topic_path, items, f"publishing to {self.topic_path}")
        return [out.job_id for out in messages]

    def _resend(self, body: bytes, attributes: dict[str, str]) -> None:
        publish_all(self._clients, self.topic_path, [(body, attributes, "")], f"publishing to {self.topic_path}")

    # -- consuming -----------------------------------------------------------------------
    def _subscription(self) -> str:
        if self.subscription_path is None:
            raise ConfigurationError(f"pubsub://{self.project}/{self.topic} has no subscription; "
                                     "add ?subscription=<SUB> to consume it")
        return self.subscription_path

    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        """Pull up to ``max_messages``; ``visibility`` sets their ack deadline (10-600 s),
        else the subscription's own deadline holds (unknown here: deliveries say None)."""
        name = self._subscription()
        self._pulled = True
        buffered = self._take(max_messages)
        if buffered:
            return buffered
        deadline = time.monotonic() + wait.total_seconds()
        # one pull serves several small receives (a worker's consumers ask for 1 at a time):
        # the rest wait here at most _BUFFER_AGE, then go back (unordered subscriptions only)
        want = max_messages if self._caps.fifo else max(max_messages, _PREFETCH)
        while True:
            left = timedelta(seconds=max(deadline - time.monotonic(), 0))
            pulled_at = self.clock.time()
            received = pull(self._clients, name, want, max(left, _SHORT_PULL), f"pulling from {name}")
            if received or time.monotonic() >= deadline:
                deliveries = [self._delivery(r) for r in received]
                if visibility is not None and deliveries:
                    seconds = math.ceil(min(max(visibility, timedelta(seconds=10)),
                                            MAX_ACK_DEADLINE).total_seconds())
                    self._modify_many(deliveries, seconds, f"setting the ack deadline of messages from {name}")
                    for delivery in deliveries:
                        delivery.visibility = timedelta(seconds=seconds)
                elif self._ack_deadline is not None:
                    for delivery in deliveries:
                        delivery.visibility = self._ack_deadline
                if deliveries:
                    self._note_held(deliveries, deliveries[0].visibility)
                    if deliveries[0].visibility is not None:
                        lease = pulled_at + deliveries[0].visibility.total_seconds()
                        for delivery in deliveries:
                            delivery.lease_until = lease
                if len(deliveries) > max_messages:
                    self._keep(deliveries[max_messages:])
                return deliveries[:max_messages]
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))

    # -- the short prefetch buffer ---------------------------------------------------------
    def _take(self, count: int) -> list[Delivery]:
        """Up to ``count`` buffered deliveries that are still fresh."""
        if not self._buffer:
            return []
        taken: list[Delivery] = []
        fresh_after = time.monotonic() - _BUFFER_AGE
        with self._buffer_lock:
            while self._buffer and len(taken) < count:
                pulled, delivery = self._buffer[0]
                if pulled < fresh_after:
                    break  # the janitor gives the stale ones back
                self._buffer.popleft()
                taken.append(delivery)
        return taken

    def _keep(self, deliveries: Sequence[Delivery]) -> None:
        now = time.monotonic()
        with self._buffer_lock:
            self._buffer.extend((now, d) for d in deliveries)
            if self._janitor is None:
                self._janitor = threading.Timer(_BUFFER_AGE, self._give_back_stale)
                self._janitor.daemon = True
                self._janitor.start()

    def _give_back_stale(self, everything: bool = False) -> None:
        """Release buffered deliveries nobody took within _BUFFER_AGE (or all of them)."""
        stale: list[Delivery] = []
        fresh_after = time.monotonic() - _BUFFER_AGE
        with self._buffer_lock:
            while self._buffer and (everything or self._buffer[0][0] < fresh_after):
                stale.append(self._buffer.popleft()[1])
            self._janitor = None
            if self._buffer and not everything:
                self._janitor = threading.Timer(_BUFFER_AGE / 2, self._give_back_stale)
                self._janitor.daemon = True
                self._janitor.start()
        if stale:
            try:
                self.release_many(stale)
            except Exception as exc:  # they come back after their ack deadline
                log.warning("could not give back %d prefetched message(s): %s", len(stale), exc)

    def _delivery(self, received: Any) -> Delivery:
        message = received.message
        attempt = received.delivery_attempt
        if not attempt:
            _warn_no_attempts(self._subscription())
            attempt = 1
        return Delivery(body=bytes(message.data), attempt=attempt, message_id=message.message_id,
                        handle=received.ack_id, ordering_key=message.ordering_key or None,
                        attributes=dict(message.attributes))

    # -- what this process knows is pending (for stats and until_empty) ---------------------
    def _note_held(self, deliveries: Sequence[Delivery], hold: timedelta | None, *, extended: bool = False) -> None:
        """Held until ``hold`` from now runs out (then Pub/Sub hands it out again)."""
        until = time.monotonic() + (hold or self._ack_deadline or MAX_ACK_DEADLINE).total_seconds()
        with self._track:
            for delivery in deliveries:
                if extended and delivery.message_id not in self._holding:
                    continue  # settled meanwhile: an extension racing the ack
                if delivery.handle is not None:
                    self._pending.pop(delivery.message_id, None)
                    self._holding[delivery.message_id] = until

    def _note_done(self, delivery: Delivery, back_in: float | None = None) -> None:
        """``delivery`` is settled; ``back_in`` seconds: it was given back and returns then."""
        if delivery.handle is None:
            return
        mid = delivery.message_id
        with self._track:
            self._holding.pop(mid, None)
            if back_in is not None:
                self._pending[mid] = time.monotonic() + back_in

    def _modify_many(self, deliveries: Sequence[Delivery], seconds: int, what: str,
                     bound: timedelta | None = None) -> None:
        handles = [d.handle for d in deliveries if d.handle is not None]
        if not handles:
            return  # push deliveries: the HTTP status settles them
        clients = self._clients
        limit = clients.timeout if bound is None else min(bound, clients.timeout)
        retry = clients.retry if bound is None else call_retry(limit)
        with translated(f"{what} at {clients.endpoint}"):
            for start in range(0, len(handles), 1000):
                clients.subscriber.modify_ack_deadline(
                    request={"subscription": self._subscription(), "ack_ids": handles[start:start + 1000],
                             "ack_deadline_seconds": seconds},
                    retry=retry, timeout=limit.total_seconds())

    def _modify(self, delivery: Delivery, seconds: int, what: str) -> None:
        self._modify_many((delivery,), seconds, what)

    def ack(self, delivery: Delivery) -> None:
        if delivery.handle is None:
            return
        acks = self._acks
        if acks is None:
            with self._track:
                if self._acks is None:
                    self._acks = _AckBatcher(self._clients, self._subscription())
                acks = self._acks
        acks.add(delivery.handle)
        self._note_done(delivery)

    def release_many(self, deliveries: Sequence[Delivery]) -> None:
        """Give back unstarted messages at once, in one call."""
        self._modify_many(deliveries, 0, "giving back unstarted messages")
        for delivery in deliveries:
            self._note_done(delivery, 0.0)

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        """Let the message come back after ``delay`` (the ack deadline, at most 600 s)."""
        seconds = math.ceil(min(delay, MAX_ACK_DEADLINE).total_seconds())
        self._modify(delivery, seconds, f"delaying the retry of {delivery.message_id}")
        self._note_done(delivery, float(seconds))

    def release(self, delivery: Delivery) -> None:
        self._modify(delivery, 0, f"giving back {delivery.message_id}")
        self._note_done(delivery, 0.0)

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        """Hold an early message for up to 600 s (Pub/Sub has no delay; this counts a delivery).

        Raises:
            UnsupportedFeature: for a push delivery, which cannot be held; the shim answers
                non-2xx so Pub/Sub delivers it again after its retry policy's backoff.
        """
        if delivery.handle is None:
            raise UnsupportedFeature("a pushed Pub/Sub message cannot be held back until its "
                                     "cqnotbefore; it is nacked and comes back after the retry backoff")
        self.retry(delivery, delay)

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        seconds = math.ceil(min(max(timeout, timedelta(seconds=10)), MAX_ACK_DEADLINE).total_seconds())
        # the heartbeat beats every quarter window for every held message from one thread:
        # one slow call must not hold it past the others' deadlines
        self._modify_many((delivery,), seconds, f"extending the ack deadline of {delivery.message_id}",
                          bound=timedelta(seconds=seconds / 4))
        self._note_held((delivery,), timedelta(seconds=seconds), extended=True)

    # -- dead letters --------------------------------------------------------------------
    def _dead_letters(self) -> TopicDeadLetters:
        if self._dead is None:
            raise ConfigurationError(
                f"pubsub://{self.project}/{self.topic} has no dead_letter_topic; add "
                "?dead_letter_topic=<TOPIC> so failed jobs are kept (the message is not acknowledged)")
        return self._dead

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        job_type = delivery.attributes.get(ATTR_TYPE)
        attributes = dict(delivery.attributes)
        attributes[ATTR_SOURCE] = self.subscription_path or self.topic_path
        self._dead_letters().write(delivery.body, str(reason), attributes, job_type=job_type,
                                   attempts=delivery.attempt)
        self.ack(delivery)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._dead_letters().list(limit)

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        return self._dead_letters().take(message_ids, self._resend)

    def purge_dead_letters(self) -> int:
        return self._dead_letters().purge()

    def stats(self) -> QueueStats:
        """Backlog from Cloud Monitoring (``waiting``, ``oldest_age``, ``dead_lettered``; None
        where unknown) and, once this process has pulled, from this process: messages it
        holds (``in_flight``) and retries it gave back that have not come back yet
        (``delayed``). A process that never pulled (``cloudqueue stats``) knows neither:
        None. Pub/Sub keeps no running totals of acknowledged messages its API returns:
        ``completed`` and ``failed`` are None."""
        if self._acks is not None:
            self._acks.flush()  # what was acknowledged here is gone before anything is counted
        backlog: int | None = None
        dead: int | None = None
        oldest: timedelta | None = None
        if self._monitoring is not None:
            if self.subscription_path is not None:
                short = self.subscription_path.rsplit("/", 1)[-1]
                backlog = self._monitoring.latest(UNDELIVERED, short)
                age = self._monitoring.latest(OLDEST_UNACKED, short)
                oldest = timedelta(seconds=age) if age is not None else None
            if self._dead is not None:
                dead = self._dead.backlog()
        now = time.monotonic()
        with self._track:
            for mid, due in list(self._pending.items()):
                if now > due + _PENDING_GRACE:
                    del self._pending[mid]
            for mid, until in list(self._holding.items()):
                if now > until:  # its hold ran out unsettled: Pub/Sub hands it out again
                    del self._holding[mid]
                    self._pending[mid] = until
            if not self._pulled:
                return QueueStats(waiting=backlog, dead_lettered=dead, oldest_age=oldest)
            return QueueStats(waiting=backlog, in_flight=len(self._holding), delayed=len(self._pending),
                              dead_lettered=dead, oldest_age=oldest)

    def close(self) -> None:
        self._give_back_stale(everything=True)
        if self._acks is not None:
            self._acks.close()
        self._clients.close()

    def __repr__(self) -> str:
        return f"<PubSubBackend {self.topic_path}>"


def monitoring_for(project: str, where: str | None, emulator: str | None, timeout: timedelta) -> Monitoring | None:
    """The Monitoring reader a ``monitoring=`` option asks for (default: Google's, none with
    an emulator)."""
    where = where or ("off" if emulator else "google")
    if where == "off":
        return None
    return Monitoring(project, None if where == "google" else where, timeout)


def _warn_no_attempts(subscription: str) -> None:
    global _warned_no_attempts
    if not _warned_no_attempts:
        _warned_no_attempts = True
        log.warning("subscription %s sends no deliveryAttempt (it has no dead-letter policy): every "
                    "delivery counts as attempt 1, so a failing job retries until its message "
                    "expires; give the subscription a dead-letter policy", subscription)


def warn_no_attempts(subscription: str) -> None:
    """Log, once per process, that a subscription does not count deliveries."""
    _warn_no_attempts(subscription)


def from_url(url: str, *, publisher: PublisherClient | None = None,
             subscriber: SubscriberClient | None = None, clock: Clock = SYSTEM_CLOCK) -> PubSubBackend:
    """Open ``pubsub://PROJECT/TOPIC?subscription=SUB&dead_letter_topic=TOPIC`` (module docstring)."""
    parts = urlsplit(url)
    if parts.scheme != "pubsub":
        raise ConfigurationError(f"not a pubsub:// URL: {url!r}")
    project, _, topic = (parts.netloc + parts.path).strip("/").partition("/")
    if not project or not topic or "/" in topic:
        raise ConfigurationError(f"pubsub URL {url!r} must be pubsub://PROJECT/TOPIC[?options]")
    options = parse_options("pubsub", parts.query, _OPTIONS)
    return PubSubBackend(
        project, topic, subscription=options.get("subscription") or None,
        dead_letter_topic=options.get("dead_letter_topic") or None,
        dead_letter_subscription=options.get("dead_letter_subscription") or None,
        ordering=parse_bool("pubsub", "ordering", options.get("ordering", "false")),
        emulator=options.get("emulator") or os.environ.get("PUBSUB_EMULATOR_HOST") or None,
        publisher=publisher, subscriber=subscriber, clock=clock,
        timeout=parse_timeout("pubsub", options.get("timeout")), monitoring=options.get("monitoring") or None)
