"""The consumer idempotency store: a job runs at most once per key, whatever the queue delivers.

    App(..., store="memory://" | "dynamodb://TABLE?region=..." | "firestore://PROJECT/COLLECTION")

One record per key. Before a guarded job runs, ``claim`` writes it conditionally:

    (none) ──claim──> in_progress ──complete──> completed   (duplicates: acked, not run)
                          │   ↑ extend (heartbeat)
                          ├──release──> released ──claim──> in_progress (runs + 1)
                          └──release(forget)──> (none)     (dead-lettered: a redrive starts over)

A claim succeeds when there is no live record, when the record was released, or when an
in-progress claim's lease ran out (its consumer died). Every record lapses at
``expires_at`` (the job's ``cq.Once(ttl=...)``); a record past it counts as absent.

``memory://`` is built in; ``dynamodb://`` comes with cloudqueue-aws and ``firestore://``
with cloudqueue-gcp. A third party registers a scheme in its pyproject.toml::

    [project.entry-points."cloudqueue.stores"]
    redis = "my_package.store:from_url"

where ``from_url(url: str) -> Store``. Nothing is imported until a URL asks for it.
"""

from __future__ import annotations

import enum
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._errors import BackendError, ConfigurationError
from ._plugins import entry_point_targets, factory_for

__all__ = ["DEFAULT_TTL", "ENTRY_POINT_GROUP", "Claim", "Document", "MemoryStore", "Once", "Record", "Status", "Store",
           "from_url", "record_key", "registered_schemes"]

ENTRY_POINT_GROUP = "cloudqueue.stores"
#: how long a completed key keeps its duplicates from running, unless the job says otherwise
DEFAULT_TTL = timedelta(hours=24)

_BUILTIN = {"memory": "cloudqueue.store:memory_from_url"}
_INSTALL_HINTS = {
    "dynamodb": 'pip install "cloudqueue[aws]"',
    "firestore": 'pip install "cloudqueue-gcp[firestore]"',
}


@dataclass(frozen=True, slots=True)
class Once:
    """How a job runs at most once per key (``@app.job(once=cq.Once(...))``).

    Args:
        ttl: how long a completed key keeps its duplicates from running (default 24 h).
        keep_result: store the job's return value (JSON) with the completed record.
        by_job_id: guard every enqueue of the job, by its job id when it has no
            idempotency key (``once=True`` sets this).
    """

    ttl: timedelta = DEFAULT_TTL
    keep_result: bool = False
    by_job_id: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0):
            raise ConfigurationError(f"cq.Once ttl must be a positive datetime.timedelta, got {self.ttl!r}")


#: what a keyed job gets from a store when it says nothing about ``once``
KEYED_ONLY = Once(by_job_id=False)


class Status(str, enum.Enum):
    """Where a key stands."""

    #: a consumer holds the claim and is running the job
    IN_PROGRESS = "in_progress"
    #: the job succeeded: duplicates are acknowledged without running
    COMPLETED = "completed"
    #: the last run failed and will be retried: the next delivery may claim it
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Record:
    """One key in the store.

    Attributes:
        key: the store key (``record_key``).
        status: in progress, completed or released.
        token: the holder of the current claim (one per run).
        runs: how many times a claim was granted: the runs of the job for this key.
        lease_until: when an in-progress claim lapses unless extended (None once settled).
        expires_at: when the record lapses altogether (the store's TTL attribute).
        job_type / job_id: the job that holds or completed the key.
        value: the job's return value as JSON text (with ``keep_result``).
        completed_at: when it completed.
    """

    key: str
    status: Status
    token: str | None
    runs: int
    lease_until: datetime | None
    expires_at: datetime
    job_type: str | None = None
    job_id: str | None = None
    value: str | None = None
    completed_at: datetime | None = None

    @property
    def result(self) -> Any:
        """The stored return value, parsed (None without one)."""
        if self.value is None:
            return None
        import json

        return json.loads(self.value)

    def live(self, now: datetime) -> bool:
        return self.expires_at > now

    def claimable(self, now: datetime) -> bool:
        """Whether a new claim may take this record over."""
        if not self.live(now):
            return True
        if self.status is Status.COMPLETED:
            return False
        return self.lease_until is None or self.lease_until <= now


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``Store.claim``: ``granted`` and the record as it stands after it
    (ours, with ``runs`` counting this run, or the one in the way)."""

    granted: bool
    record: Record


@dataclass(frozen=True, slots=True)
class Document:
    """A versioned JSON document in the store (flows keep their state in one).

    ``save`` writes version N only over version N - 1 (or, for version 1, where there is
    none), so two writers that read the same version cannot both write the next.
    """

    key: str
    version: int
    value: str
    expires_at: datetime


#: attempts ``Store.add_member``'s default makes at a contended write
_SET_ATTEMPTS = 200


def record_key(app: str, *, idempotency_key: str | None = None, job_id: str | None = None) -> str:
    """The store key of a job: by its idempotency key (app-wide, as enqueue dedups), else its id."""
    if idempotency_key is not None:
        return f"{app}/key/{idempotency_key}"
    if job_id is None:
        raise ConfigurationError("record_key needs an idempotency_key or a job_id")
    return f"{app}/id/{job_id}"


class Store(ABC):
    """A place for idempotency records. Subclasses implement five conditional primitives.

    Every write is conditional, so two consumers racing on one key cannot both win:
    ``claim`` succeeds for exactly one of them. Times are aware datetimes the caller
    computes on the app's clock. Implementations are thread-safe and take an injected
    client where they use one.
    """

    #: the URL scheme this store registers under
    scheme: str = ""
    #: the most bytes one document (``save``'s value) may hold; None: no set limit
    max_document_size: int | None = None

    @abstractmethod
    def claim(self, key: str, *, token: str, now: datetime, lease_until: datetime,
              expires_at: datetime, job_type: str | None = None, job_id: str | None = None) -> Claim:
        """Take ``key`` as in progress for ``token`` when ``Record.claimable`` allows it;
        ``runs`` goes up by one (starting over when the old record had lapsed)."""

    @abstractmethod
    def extend(self, key: str, *, token: str, lease_until: datetime) -> bool:
        """Move the lease of ``token``'s claim; False when the claim is no longer its."""

    @abstractmethod
    def complete(self, key: str, *, token: str, now: datetime, expires_at: datetime,
                 value: str | None = None) -> bool:
        """Mark ``token``'s claim completed (with ``value``, JSON); False when it was lost."""

    @abstractmethod
    def release(self, key: str, *, token: str, forget: bool = False) -> bool:
        """Give up ``token``'s claim after a failure: released (the run count kept) or,
        with ``forget``, deleted. False when the claim was no longer its."""

    @abstractmethod
    def get(self, key: str, *, now: datetime | None = None) -> Record | None:
        """The live record of ``key`` at ``now`` (default: the system time), or None."""

    def load(self, key: str, *, now: datetime | None = None) -> Document | None:
        """The live document at ``key``, or None (flows; see ``Document``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no documents: flows need a store "
                                  "with load/save (memory://, dynamodb://, firestore://)")

    def save(self, key: str, value: str, *, version: int, expires_at: datetime,
             now: datetime | None = None) -> bool:
        """Write ``value`` as ``version`` of ``key`` when the stored version is ``version - 1``
        (version 1: when no live document is there); False when another writer got there first."""
        raise NotImplementedError(f"{type(self).__name__} keeps no documents: flows need a store "
                                  "with load/save (memory://, dynamodb://, firestore://)")

    def scan(self, prefix: str, *, now: datetime | None = None, limit: int = 1000) -> list[Document]:
        """At most ``limit`` live documents whose key starts with ``prefix`` (listing flows).

        Stores that can order by key return the documents in key order; the order is
        otherwise the store's. A store may read more than ``limit`` items to find them.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its documents: listing flows "
                                  "needs a store with scan (memory://, dynamodb://, firestore://)")

    def load_many(self, keys: Sequence[str], *, now: datetime | None = None) -> dict[str, Document]:
        """The live documents at ``keys`` (a key with none is left out). Stores that can
        read many items in one call override this loop over ``load``."""
        found = {}
        for key in keys:
            document = self.load(key, now=now)
            if document is not None:
                found[key] = document
        return found

    def add_member(self, key: str, member: int, *, expires_at: datetime, now: datetime | None = None) -> int:
        """Add ``member`` to the set of numbers at ``key`` (adding one already there changes
        nothing); the set's size after. A flow counts its finished children with it, one
        write per child whatever the flow's width. This default keeps the set in a
        document (``load`` / ``save``, retried when another writer got there first);
        stores override it with their own atomic set update."""
        for attempt in range(_SET_ATTEMPTS):
            document = self.load(key, now=now)
            members = set(json.loads(document.value)) if document is not None else set()
            if member in members:
                return len(members)
            members.add(member)
            version = document.version + 1 if document is not None else 1
            if self.save(key, json.dumps(sorted(members)), version=version,
                         expires_at=document.expires_at if document is not None else expires_at, now=now):
                return len(members)
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
        raise BackendError(f"store {self!r}: {_SET_ATTEMPTS} writes in a row to {key!r} lost to other writers")

    def members(self, key: str, *, now: datetime | None = None) -> frozenset[int]:
        """The set ``add_member`` keeps at ``key`` (empty when there is none)."""
        document = self.load(key, now=now)
        return frozenset(json.loads(document.value)) if document is not None else frozenset()

    def delete(self, key: str) -> None:
        """Forget ``key`` whatever its state (an operator's way to let a job run again)."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete records")

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release connections; the store is not used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scheme}>"


class MemoryStore(Store):
    """Records in a dict, for tests and local work. ``memory://NAME`` is shared in the process.

    ``max_document_size`` sets a limit a cloud store has (DynamoDB's 400 KB), to meet it locally.
    """

    scheme = "memory"

    def __init__(self, *, max_document_size: int | None = None) -> None:
        self.max_document_size = max_document_size
        self._records: dict[str, Record] = {}
        self._documents: dict[str, Document] = {}
        self._sets: dict[str, tuple[set[int], datetime]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, *, token: str, now: datetime, lease_until: datetime,
              expires_at: datetime, job_type: str | None = None, job_id: str | None = None) -> Claim:
        with self._lock:
            old = self._records.get(key)
            if old is not None and not old.claimable(now):
                return Claim(False, old)
            runs = old.runs + 1 if old is not None and old.live(now) else 1
            record = Record(key, Status.IN_PROGRESS, token, runs, lease_until, expires_at, job_type, job_id)
            self._records[key] = record
            return Claim(True, record)

    def _mine(self, key: str, token: str) -> Record | None:
        record = self._records.get(key)
        return record if record is not None and record.token == token and \
            record.status is Status.IN_PROGRESS else None

    def extend(self, key: str, *, token: str, lease_until: datetime) -> bool:
        with self._lock:
            record = self._mine(key, token)
            if record is None:
                return False
            self._records[key] = replace(record, lease_until=lease_until)
            return True

    def complete(self, key: str, *, token: str, now: datetime, expires_at: datetime,
                 value: str | None = None) -> bool:
        with self._lock:
            record = self._mine(key, token)
            if record is None:
                return False
            self._records[key] = replace(record, status=Status.COMPLETED, lease_until=None,
                                         expires_at=expires_at, value=value, completed_at=now)
            return True

    def release(self, key: str, *, token: str, forget: bool = False) -> bool:
        with self._lock:
            record = self._mine(key, token)
            if record is None:
                return False
            if forget:
                del self._records[key]
            else:
                self._records[key] = replace(record, status=Status.RELEASED, lease_until=None)
            return True

    def get(self, key: str, *, now: datetime | None = None) -> Record | None:
        from .clock import SYSTEM_CLOCK

        record = self._records.get(key)
        if record is None or not record.live(now or SYSTEM_CLOCK.now()):
            return None
        return record

    def load(self, key: str, *, now: datetime | None = None) -> Document | None:
        from .clock import SYSTEM_CLOCK

        document = self._documents.get(key)
        if document is None or document.expires_at <= (now or SYSTEM_CLOCK.now()):
            return None
        return document

    def save(self, key: str, value: str, *, version: int, expires_at: datetime,
             now: datetime | None = None) -> bool:
        with self._lock:
            current = self.load(key, now=now)
            if (current.version if current is not None else 0) != version - 1:
                return False
            self._documents[key] = Document(key, version, value, expires_at)
            return True

    def scan(self, prefix: str, *, now: datetime | None = None, limit: int = 1000) -> list[Document]:
        from .clock import SYSTEM_CLOCK

        moment = now or SYSTEM_CLOCK.now()
        with self._lock:
            found = sorted((d for k, d in self._documents.items() if k.startswith(prefix) and d.expires_at > moment),
                           key=lambda d: d.key)
        return found[:max(limit, 0)]

    def add_member(self, key: str, member: int, *, expires_at: datetime, now: datetime | None = None) -> int:
        from .clock import SYSTEM_CLOCK

        with self._lock:
            held = self._sets.get(key)
            if held is None or held[1] <= (now or SYSTEM_CLOCK.now()):
                held = self._sets[key] = (set(), expires_at)
            held[0].add(member)
            return len(held[0])

    def members(self, key: str, *, now: datetime | None = None) -> frozenset[int]:
        from .clock import SYSTEM_CLOCK

        with self._lock:
            held = self._sets.get(key)
            if held is None or held[1] <= (now or SYSTEM_CLOCK.now()):
                return frozenset()
            return frozenset(held[0])

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)
            self._documents.pop(key, None)
            self._sets.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)


_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


def memory_from_url(url: str) -> MemoryStore:
    """``memory://`` (private to this app) or ``memory://NAME`` (shared in the process)."""
    parts = urlsplit(url)
    if parts.query:
        raise ConfigurationError(f"store URL {url!r}: memory:// takes no options "
                                 f"(got {sorted(parse_qs(parts.query))})")
    name = parts.netloc + parts.path
    if not name:
        return MemoryStore()
    with _NAMED_LOCK:
        return _NAMED.setdefault(name, MemoryStore())


def _entry_points() -> dict[str, str]:
    return entry_point_targets(ENTRY_POINT_GROUP)


def registered_schemes() -> list[str]:
    """Every store scheme this installation can open."""
    return sorted({*_BUILTIN, *_entry_points()})


def from_url(url: str) -> Store:
    """Open the store a URL names: ``memory://``, ``dynamodb://TABLE?region=...``,
    ``firestore://PROJECT/COLLECTION``, or a scheme a third party registered.

    Raises:
        ConfigurationError: no scheme, an unknown scheme (with "did you mean" and the
            install hint for first-party adapters), or the store rejects the URL.
    """
    scheme = urlsplit(url).scheme if isinstance(url, str) and "://" in url else ""
    if not scheme:
        raise ConfigurationError(
            f"store URL {url!r} has no scheme; write e.g. store='memory://' or "
            "store='dynamodb://my-table?region=eu-west-1'")
    factory: Callable[[str], Store] = factory_for("store", scheme, url, _BUILTIN, _entry_points,
                                                   _INSTALL_HINTS)
    return factory(url)
