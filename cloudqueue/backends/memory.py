"""An in-process queue that behaves like a real one, for tests and local work.

It stores bytes (a payload that would not survive a cloud queue does not survive here),
hides received messages for a visibility timeout, counts receives, honours delays,
moves a message to dead letters after its job's attempts when nobody settles it,
optionally keeps FIFO order per ordering key, runs a message with a higher ``priority``
before the others that are due (standard queues), drops a repeated idempotency key within a
window, and lists, redrives and purges dead letters. Time comes from an injected clock.

URL: ``memory://[name][?visibility_timeout=30&fifo=false&dedup_window=300
&max_message_size=262144&max_receives=N]``. A named queue is shared inside the process
(two apps, or an app and the CLI, may open ``memory://orders``); ``memory://`` is private.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time as _time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._errors import ConfigurationError, PayloadError, QueueNotFound, StaleDelivery
from ..clock import SYSTEM_CLOCK, Clock
from .base import Backend, Capabilities, DeadLetter, Delivery, OutgoingMessage, QueueStats

if TYPE_CHECKING:
    from ..lifecycle import Reason
from .options import parse_bool, parse_number, parse_options, parse_seconds

_DEFAULT_VISIBILITY = timedelta(seconds=30)
_DEFAULT_DEDUP = timedelta(minutes=5)
_DEFAULT_SIZE = 256 * 1024
#: an ack takes the lock-free path only while the message's visibility has this much left
_ACK_MARGIN = 1.0
_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


#: what a receive took under the lock: body, receives, message id, token, group
_Taken = tuple[bytes, int, str, int, "str | None"]


class _Msg:
    __slots__ = (
        "body",
        "group",
        "job_id",
        "job_type",
        "key",
        "max_attempts",
        "mid",
        "prio",
        "receives",
        "sent_at",
        "seq",
        "token",
        "visible_at",
    )

    def __init__(self, mid: str, out: OutgoingMessage, seq: int, now: float) -> None:
        self.mid = mid
        self.body = out.body
        self.job_id = out.job_id
        self.job_type = out.job_type
        self.seq = seq
        delay = out.delay
        self.visible_at = now + delay.total_seconds() if delay else now
        self.receives = 0
        self.group = out.ordering_key
        self.key = out.idempotency_key
        self.max_attempts = out.max_attempts
        self.prio = out.priority or 0
        self.sent_at = now
        self.token = 0  # 0: not in flight; else the receipt of the current receive


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A message still in the queue (waiting, delayed or in flight), for inspection."""

    message_id: str
    job_id: str
    job_type: str
    body: bytes
    due_at: datetime
    receives: int
    in_flight: bool
    ordering_key: str | None


@dataclass(frozen=True, slots=True)
class _Dead:
    letter: DeadLetter
    out: OutgoingMessage


def _acquire_yielding(lock: threading.Lock) -> None:
    """Take ``lock`` from a thread that found it taken, by yielding the GIL, not sleeping on it.

    A thread asleep on a lock is woken owning it, but without the GIL, which the releasing
    thread still runs with; that one's next receive then finds the lock taken, sleeps on
    it and hands over the GIL, and from then on two consumer threads pass the lock and the
    GIL to each other on every receive. Yielding instead lets the holder finish (every
    hold of this lock is short) and keeps the lock with threads that can run.
    """
    while not lock.acquire(False):
        _time.sleep(0)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class MemoryBackend(Backend):
    """A thread-safe in-memory queue; see the module docstring."""

    scheme = "memory"
    send_concurrency = 1  # in-process: threads would only contend for the lock

    def __init__(self, *, name: str = "", clock: Clock = SYSTEM_CLOCK,
                 visibility_timeout: timedelta = _DEFAULT_VISIBILITY, fifo: bool = False,
                 dedup_window: timedelta = _DEFAULT_DEDUP, max_message_size: int = _DEFAULT_SIZE,
                 max_receives: int | None = None) -> None:
        if visibility_timeout <= timedelta(0):
            raise ConfigurationError("memory backend: visibility_timeout must be positive")
        if max_receives is not None and max_receives < 1:
            raise ConfigurationError("memory backend: max_receives must be >= 1")
        self.name = name
        self.clock = clock
        self.visibility_timeout = visibility_timeout
        self.fifo = fifo
        self.dedup_window = dedup_window
        self.max_receives = max_receives
        self._caps = Capabilities(max_delay=None, max_message_size=max_message_size,
                                  max_batch=1000, fifo=fifo, dedup=True, pull=True,
                                  visibility=True, uncounted_release=True, priority=not fifo)
        # ``with self._lock`` enters the lock in C; the condition shares it for waiting
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._msgs: dict[str, _Msg] = {}
        self._ready: deque[str] = deque()  # due messages of priority 0, in send order
        self._urgent: list[tuple[int, int, str]] = []  # due with a priority: (-priority, seq, mid)
        # (visible_at, seq, ((mid, token), ...)): when messages come back unless settled or
        # re-scheduled since; a receive files its whole batch as one entry
        self._timed: list[tuple[float, int, tuple[tuple[str, int], ...]]] = []
        self._keys: dict[str, tuple[str, float]] = {}
        self._dead: dict[str, _Dead] = {}
        self._seq = itertools.count(1)
        self._closed = False
        self._waiting = 0  # receivers blocked in wait(): only they need a notify
        self._wakes = 0  # bumped by wake(): receives waiting then return at once
        # Running totals for stats(), all kept under the lock. Acks are not counted (the
        # ack path may skip the lock): completed = made - still here - buried - purged.
        self._made = 0  # messages put in (sends and redrives)
        self._buried = 0  # messages moved to dead letters
        self._purged = 0  # messages dropped by purge()
        self._retried = 0  # deliveries given back as a failed attempt

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    # -- producing -----------------------------------------------------------------------
    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        ids: list[str] = []
        limit = self._caps.max_message_size
        for out in messages:
            if type(out.body) is not bytes:
                raise TypeError("the memory backend stores bytes only")
            if len(out.body) > limit:
                raise PayloadError(f"message for job {out.job_type!r} is {len(out.body)} bytes, "
                                   f"over the queue's limit of {limit}", job=out.job_type)
        with self._lock:
            self._check_open()
            now = self.clock.time()
            for out in messages:
                if out.idempotency_key is not None:
                    seen = self._keys.get(out.idempotency_key)
                    if seen is not None and seen[1] > now:
                        ids.append(seen[0])
                        continue
                    self._keys[out.idempotency_key] = (
                        out.job_id, now + self.dedup_window.total_seconds())
                seq = next(self._seq)
                mid = f"m{seq}"
                msg = _Msg(mid, out, seq, now)
                self._msgs[mid] = msg
                self._schedule(msg, now)
                self._made += 1
                ids.append(out.job_id)
            if self._waiting:
                self._cond.notify_all()
        return ids

    def _schedule(self, msg: _Msg, now: float) -> None:
        if self.fifo:
            return  # FIFO receive scans messages in order; it needs no index
        if msg.visible_at <= now:
            if msg.prio:
                heapq.heappush(self._urgent, (-msg.prio, msg.seq, msg.mid))
            else:
                self._ready.append(msg.mid)
        else:
            heapq.heappush(self._timed, (msg.visible_at, next(self._seq), ((msg.mid, msg.token),)))

    # -- consuming -----------------------------------------------------------------------
    def receive(self, max_messages: int = 10, wait: timedelta = timedelta(0),
                visibility: timedelta | None = None) -> list[Delivery]:
        give_up = _time.monotonic() + wait.total_seconds()
        hide = visibility if visibility is not None and visibility > timedelta(0) else self.visibility_timeout
        lock = self._lock
        if not lock.acquire(False):
            _acquire_yielding(lock)
        try:
            wakes = self._wakes
            while True:
                self._check_open()
                now = self.clock.time()
                got = self._take_fifo(max_messages, now, hide) if self.fifo else \
                    self._take(max_messages, now, hide)
                if got:
                    break
                left = give_up - _time.monotonic()
                if left <= 0 or self._wakes != wakes:
                    return []
                self._waiting += 1
                try:
                    self._cond.wait(min(left, 0.05))
                finally:
                    self._waiting -= 1
        finally:
            lock.release()
        # built after the lock is released: every consumer thread takes that lock, and the
        # shorter it is held, the rarer a thread switch finds it taken
        return [Delivery(body, receives, mid, token, group, None, _NO_ATTRIBUTES, hide)
                for body, receives, mid, token, group in got]

    def wake(self) -> None:
        """Make every receive waiting for messages return now, empty-handed (a stopping
        worker's consumers then stop without waiting out their poll)."""
        if not self._lock.acquire(timeout=1):  # never stuck, also when called from a signal handler
            return
        try:
            self._wakes += 1
            if self._waiting:
                self._cond.notify_all()
        finally:
            self._lock.release()

    def _promote(self, now: float) -> None:
        timed, msgs, ready = self._timed, self._msgs, self._ready
        while timed and timed[0][0] <= now:
            for mid, token in heapq.heappop(timed)[2]:
                msg = msgs.get(mid)
                if msg is None or msg.token != token or msg.visible_at > now:
                    continue  # stale entry: settled, or re-scheduled since
                msg.token = 0  # an expired visibility timeout: the message is back
                if msg.prio:
                    heapq.heappush(self._urgent, (-msg.prio, msg.seq, mid))
                else:
                    ready.append(mid)

    def _take(self, max_messages: int, now: float, hide: timedelta) -> list[_Taken]:
        timed = self._timed
        if timed and timed[0][0] <= now:
            self._promote(now)
        if self._urgent:
            return self._take_by_priority(max_messages, now, hide)
        out: list[_Taken] = []
        ready, msgs = self._ready, self._msgs
        visible_at = now + hide.total_seconds()
        while ready and len(out) < max_messages:
            msg = msgs.get(ready.popleft())
            if msg is None or msg.token or msg.visible_at > now:
                continue
            taken = self._deliver(msg, now, visible_at)
            if taken is not None:
                out.append(taken)
        self._file(out, visible_at)
        return out

    def _take_by_priority(self, max_messages: int, now: float, hide: timedelta) -> list[_Taken]:
        # a positive priority goes before the priority-0 messages, a negative one after them;
        # within one priority, send order
        out: list[_Taken] = []
        ready, urgent, msgs = self._ready, self._urgent, self._msgs
        visible_at = now + hide.total_seconds()
        while len(out) < max_messages:
            if urgent and (urgent[0][0] < 0 or not ready):
                mid = heapq.heappop(urgent)[2]
            elif ready:
                mid = ready.popleft()
            else:
                break
            msg = msgs.get(mid)
            if msg is None or msg.token or msg.visible_at > now:
                continue
            taken = self._deliver(msg, now, visible_at)
            if taken is not None:
                out.append(taken)
        self._file(out, visible_at)
        return out

    def _file(self, taken: list[_Taken], visible_at: float) -> None:
        """File one receive's messages in the timed heap as one entry: back at ``visible_at``."""
        if taken:
            heapq.heappush(self._timed, (visible_at, next(self._seq), tuple([(t[2], t[3]) for t in taken])))

    def _take_fifo(self, max_messages: int, now: float, hide: timedelta) -> list[_Taken]:
        # Only the oldest message of each group may be delivered, and only when nothing of
        # that group is in flight or waiting for its retry: order per group holds.
        blocked: set[str] = set()
        out: list[_Taken] = []
        for msg in sorted(self._msgs.values(), key=lambda m: m.seq):
            if len(out) >= max_messages:
                break
            if msg.group is not None:  # messages without a key are not ordered
                if msg.group in blocked:
                    continue
                blocked.add(msg.group)
            if msg.token and msg.visible_at <= now:
                msg.token = 0
            if msg.token or msg.visible_at > now:
                continue
            taken = self._deliver(msg, now, now + hide.total_seconds())
            if taken is not None:
                out.append(taken)
        return out

    def _deliver(self, msg: _Msg, now: float, visible_at: float) -> _Taken | None:
        limit = self.max_receives or msg.max_attempts
        if limit is not None and msg.receives >= limit:
            self._bury(msg, f"unsettled: received {msg.receives} times without being settled "
                            "(a consumer died or timed out)", now)
            return None
        msg.receives += 1
        msg.token = token = next(self._seq)
        msg.visible_at = visible_at  # the caller files it in the timed heap (not FIFO: no heap)
        return msg.body, msg.receives, msg.mid, token, msg.group

    def _owned(self, delivery: Delivery) -> _Msg:
        msg = self._msgs.get(delivery.message_id)
        if msg is None or msg.token != delivery.handle:
            # settled already, or its visibility ran out and it was received again
            raise StaleDelivery(f"message {delivery.message_id} is no longer held by this "
                                "delivery (settled already, or its visibility ran out)")
        return msg

    def ack(self, delivery: Delivery) -> None:
        msg = self._msgs.get(delivery.message_id)
        # Held by this delivery and far from expiring: no receive can take it before the pop
        # below, so the lock (a convoy point for many consumer threads) is not needed.
        if msg is not None and msg.token == delivery.handle and \
                msg.visible_at - _ACK_MARGIN > self.clock.time() and \
                self._msgs.pop(delivery.message_id, None) is msg:
            return
        with self._lock:
            self._owned(delivery)
            del self._msgs[delivery.message_id]

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        self._reschedule(delivery, delay, count=True)

    def release(self, delivery: Delivery) -> None:
        self._reschedule(delivery, timedelta(0), count=False)

    def defer(self, delivery: Delivery, delay: timedelta) -> None:
        self._reschedule(delivery, delay, count=False)

    def _reschedule(self, delivery: Delivery, delay: timedelta, *, count: bool) -> None:
        with self._lock:
            msg = self._owned(delivery)
            now = self.clock.time()
            if count:
                self._retried += 1
            else:
                msg.receives -= 1
            msg.token = 0
            msg.visible_at = now + delay.total_seconds()
            self._schedule(msg, now)
            if self._waiting:
                self._cond.notify_all()

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        with self._lock:
            msg = self._owned(delivery)
            msg.visible_at = self.clock.time() + timeout.total_seconds()
            if not self.fifo:
                heapq.heappush(self._timed, (msg.visible_at, next(self._seq), ((msg.mid, msg.token),)))

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        self._reschedule(delivery, delay, count=False)

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        with self._lock:
            self._bury(self._owned(delivery), str(reason), self.clock.time())

    def _bury(self, msg: _Msg, reason: str, now: float) -> None:
        del self._msgs[msg.mid]
        self._buried += 1
        letter = DeadLetter(message_id=msg.mid, body=msg.body, reason=reason,
                            job_type=msg.job_type, dead_lettered_at=_utc(now),
                            attempts=msg.receives)
        out = OutgoingMessage(body=msg.body, job_id=msg.job_id, job_type=msg.job_type,
                              ordering_key=msg.group, max_attempts=msg.max_attempts,
                              priority=msg.prio or None)
        self._dead[msg.mid] = _Dead(letter, out)

    # -- inspecting ----------------------------------------------------------------------
    def stats(self) -> QueueStats:
        with self._lock:
            now = self.clock.time()
            waiting = in_flight = delayed = 0
            oldest: float | None = None
            for msg in list(self._msgs.values()):  # a snapshot: acks do not take the lock
                if msg.token and msg.visible_at > now:
                    in_flight += 1
                elif msg.visible_at > now:
                    delayed += 1
                else:
                    waiting += 1
                oldest = msg.sent_at if oldest is None else min(oldest, msg.sent_at)
            age = timedelta(seconds=max(now - oldest, 0)) if oldest is not None else None
            completed = self._made - len(self._msgs) - self._buried - self._purged
            return QueueStats(waiting=waiting, in_flight=in_flight, delayed=delayed,
                              dead_lettered=len(self._dead), oldest_age=age,
                              completed=completed, failed=self._retried + self._buried)

    def pending(self) -> list[PendingMessage]:
        """Every message not yet settled, oldest first."""
        with self._lock:
            now = self.clock.time()
            return [PendingMessage(m.mid, m.job_id, m.job_type, m.body, _utc(m.visible_at),
                                   m.receives, bool(m.token) and m.visible_at > now, m.group)
                    for m in sorted(self._msgs.values(), key=lambda m: m.seq)]

    def next_due(self) -> datetime | None:
        """When the next message not in flight becomes visible (None: nothing waits)."""
        with self._lock:
            times = [m.visible_at for m in list(self._msgs.values()) if not m.token]
            return _utc(min(times)) if times else None

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            return [d.letter for d in itertools.islice(self._dead.values(), limit)]

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        with self._lock:
            chosen = list(self._dead) if message_ids is None else \
                [mid for mid in message_ids if mid in self._dead]
            missing = [] if message_ids is None else [m for m in message_ids if m not in self._dead]
            if missing:
                raise QueueNotFound(f"no dead letter with id {', '.join(missing)} in this queue")
            now = self.clock.time()
            for mid in chosen:
                out = self._dead.pop(mid).out
                seq = next(self._seq)
                msg = _Msg(f"m{seq}", out, seq, now)
                self._msgs[msg.mid] = msg
                self._schedule(msg, now)
            self._made += len(chosen)
            self._cond.notify_all()
            return len(chosen)

    def purge_dead_letters(self) -> int:
        with self._lock:
            count = len(self._dead)
            self._dead.clear()
            return count

    def purge(self) -> int:
        """Drop every message still in the queue (not the dead letters); return how many."""
        with self._lock:
            count = len(self._msgs)
            self._purged += count
            self._msgs.clear()
            self._ready.clear()
            self._urgent.clear()
            self._timed.clear()
            return count

    def close(self) -> None:
        with self._lock:
            if self.name:
                return  # a named queue outlives one user; it is dropped with the process
            self._closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this memory backend was closed")

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.name or '(private)'}{' fifo' if self.fifo else ''}>"


_NAMED: dict[str, MemoryBackend] = {}
_NAMED_LOCK = threading.Lock()
_OPTIONS = ("visibility_timeout", "fifo", "dedup_window", "max_message_size", "max_receives")


def from_url(url: str, *, clock: Clock = SYSTEM_CLOCK) -> MemoryBackend:
    """Open ``memory://[name][?options]`` (see the module docstring)."""
    parts = urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    options: dict[str, object] = {}
    for key, value in parse_options("memory", parts.query, _OPTIONS).items():
        if key == "fifo":
            options[key] = parse_bool("memory", key, value)
        elif key in ("visibility_timeout", "dedup_window"):
            options[key] = parse_seconds("memory", key, value)
        else:
            options[key] = int(parse_number("memory", key, value))
    if not name:
        return MemoryBackend(clock=clock, **options)  # type: ignore[arg-type]
    with _NAMED_LOCK:
        backend = _NAMED.get(name)
        if backend is None:
            backend = _NAMED[name] = MemoryBackend(name=name, clock=clock, **options)  # type: ignore[arg-type]
        return backend
