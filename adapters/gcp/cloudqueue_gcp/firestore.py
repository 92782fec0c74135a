"""The idempotency store on Firestore: ``firestore://PROJECT/COLLECTION[?database=...&timeout=...]``.

One document per key in COLLECTION (the key, percent-quoted, is the document id); every
change reads the document and writes it only when the claim's rules allow, on the
precondition that it is unchanged since the read (a create: that none exists), so two
consumers racing on a key cannot both claim it: the one that loses reads again.
``expires_at`` is a timestamp: give the collection a TTL policy on it (the Terraform
module ``gcp-pubsub`` / ``gcp-cloud-tasks`` does, with ``store_collection``) and Firestore
deletes lapsed records itself.

    document: status, token, runs, lease_until, expires_at (TTL), job_type, job_id,
              value (the JSON return value), completed_at

``google-cloud-firestore`` is imported when the store first calls Firestore
(``pip install "cloudqueue-gcp[firestore]"``). With ``$FIRESTORE_EMULATOR_HOST``
set, the client talks to the emulator, as Google's SDK does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from cloudqueue import BackendUnavailable, ConfigurationError
from cloudqueue.store import Claim, Document, Record, Status, Store

from ._common import parse_options, parse_timeout, translated

__all__ = ["TTL_FIELD", "FirestoreStore", "from_url"]

class _Keep:
    """A decision to write nothing."""


KEEP = _Keep()
#: most writes a change loses to other writers before it gives up
_RACES = 20


class _LostRace(Exception):
    pass


#: the field a Firestore TTL policy deletes records by
TTL_FIELD = "expires_at"
#: the array field ``add_member`` keeps (a flow's finished children)
_MEMBERS = "members"
OPTIONS = ("database", "timeout")
_INSTALL_HINT = 'pip install "cloudqueue-gcp[firestore]"'
T = TypeVar("T")


class FirestoreStore(Store):
    """Idempotency records in a Firestore collection.

    Args:
        project: the Google Cloud project.
        collection: the collection's path (``cloudqueue-store``, or ``apps/shop/store``).
        database: the Firestore database (default ``(default)``).
        client: a ``google.cloud.firestore.Client`` (default: one made on first use).
        timeout: the longest one call may take.
    """

    scheme = "firestore"
    max_document_size = 1_000_000  # 1 MiB a document, less its name and other fields

    def __init__(self, project: str, collection: str, *, database: str | None = None, client: Any = None,
                 timeout: timedelta = timedelta(seconds=30)) -> None:
        if not project or not collection:
            raise ConfigurationError("FirestoreStore needs a project and a collection: "
                                     "firestore://PROJECT/COLLECTION")
        self.project = project
        self.collection = collection
        self.database = database
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        from google.cloud import firestore
                    except ImportError as exc:
                        raise ConfigurationError(f"the firestore store needs google-cloud-firestore: "
                                                 f"{_INSTALL_HINT}") from exc
                    with translated(f"Firestore client for project {self.project!r}"):
                        self._client = firestore.Client(project=self.project, database=self.database)
        return self._client

    def _doc(self, key: str) -> Any:
        return self.client.collection(self.collection).document(quote(key, safe=""))

    def _write_if_unchanged(self, what: str, key: str,
                            decide: Callable[[Record | None], tuple[T, Record | _Keep | None]]) -> T:
        """Read the record, ``decide`` (the answer, and what to write: a record, None to
        delete it, or ``KEEP``), then write on the precondition that the document is
        unchanged since the read (a create: that there is none). A writer that lost the
        race reads again. Optimistic, with no transaction: a transaction's locks time out
        when several consumers race on one key."""
        from google.api_core import exceptions

        doc = self._doc(key)
        timeout = self.timeout.total_seconds()
        for attempt in range(_RACES):
            with translated(f"Firestore store read of {key!r} in {self.collection!r}"):
                snapshot = doc.get(timeout=timeout)
            current = _record(key, snapshot.to_dict() or {}) if snapshot.exists else None
            answer, change = decide(current)
            if change is KEEP:
                return answer
            try:
                with translated(f"Firestore store {what} of {key!r} in {self.collection!r}"):
                    try:
                        if not snapshot.exists:
                            doc.create(_fields(change), timeout=timeout)  # type: ignore[arg-type]
                        else:
                            unchanged = self.client.write_option(last_update_time=snapshot.update_time)
                            if change is None:
                                doc.delete(option=unchanged, timeout=timeout)
                            else:
                                doc.update(_fields(change), option=unchanged, timeout=timeout)  # type: ignore[arg-type]
                    except (exceptions.Conflict, exceptions.FailedPrecondition, exceptions.NotFound):
                        raise _LostRace from None
            except _LostRace:
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # apart, before reading again
                continue
            return answer
        raise BackendUnavailable(f"Firestore store {what} of {key!r} in {self.collection!r}: the "
                                 f"document changed under {_RACES} writes in a row; try again")

    # -- the primitives ----------------------------------------------------------------
    def claim(self, key: str, *, token: str, now: datetime, lease_until: datetime,
              expires_at: datetime, job_type: str | None = None, job_id: str | None = None) -> Claim:
        def decide(old: Record | None) -> tuple[Claim, Record | _Keep]:
            if old is not None and not old.claimable(now):
                return Claim(False, old), KEEP
            runs = old.runs + 1 if old is not None and old.live(now) else 1
            record = Record(key, Status.IN_PROGRESS, token, runs, lease_until, expires_at, job_type, job_id)
            return Claim(True, record), record

        return self._write_if_unchanged("claim", key, decide)

    def _change(self, what: str, key: str, token: str, change: Callable[[Record], Record | None]) -> bool:
        def decide(record: Record | None) -> tuple[bool, Record | _Keep | None]:
            if record is None or record.token != token or record.status is not Status.IN_PROGRESS:
                return False, KEEP
            return True, change(record)

        return self._write_if_unchanged(what, key, decide)

    def extend(self, key: str, *, token: str, lease_until: datetime) -> bool:
        from dataclasses import replace

        return self._change("extend", key, token, lambda r: replace(r, lease_until=lease_until))

    def complete(self, key: str, *, token: str, now: datetime, expires_at: datetime,
                 value: str | None = None) -> bool:
        from dataclasses import replace

        return self._change("complete", key, token, lambda r: replace(
            r, status=Status.COMPLETED, lease_until=None, expires_at=expires_at, value=value, completed_at=now))

    def release(self, key: str, *, token: str, forget: bool = False) -> bool:
        from dataclasses import replace

        return self._change("release", key, token,
                            lambda r: None if forget else replace(r, status=Status.RELEASED, lease_until=None))

    def get(self, key: str, *, now: datetime | None = None) -> Record | None:
        with translated(f"Firestore store read of {key!r} in {self.collection!r}"):
            snapshot = self._doc(key).get(timeout=self.timeout.total_seconds())
        if not snapshot.exists:
            return None
        record = _record(key, snapshot.to_dict() or {})
        return record if record.live(now or datetime.now(timezone.utc)) else None

    def load(self, key: str, *, now: datetime | None = None) -> Document | None:
        with translated(f"Firestore store read of {key!r} in {self.collection!r}"):
            snapshot = self._doc(key).get(timeout=self.timeout.total_seconds())
        return _document(key, snapshot, now or datetime.now(timezone.utc))

    def save(self, key: str, value: str, *, version: int, expires_at: datetime,
             now: datetime | None = None) -> bool:
        # Optimistic, without a transaction's locks (which time out under a flow's racing
        # children): read, then write on the precondition that the document is unchanged
        # since (create: that there is none).
        from google.api_core import exceptions

        doc = self._doc(key)
        timeout = self.timeout.total_seconds()
        with translated(f"Firestore store read of {key!r} in {self.collection!r}"):
            snapshot = doc.get(timeout=timeout)
        current = _document(key, snapshot, now or datetime.now(timezone.utc))
        if (current.version if current is not None else 0) != version - 1:
            return False
        fields = {"version": version, "doc": value, TTL_FIELD: expires_at}
        with translated(f"Firestore store save of {key!r} in {self.collection!r}"):
            try:
                if snapshot.exists:  # the version before, or a lapsed document
                    doc.update(fields, option=self.client.write_option(last_update_time=snapshot.update_time),
                               timeout=timeout)
                else:
                    doc.create(fields, timeout=timeout)
            except (exceptions.Conflict, exceptions.FailedPrecondition, exceptions.NotFound):
                return False  # another writer got there first
        return True

    def scan(self, prefix: str, *, now: datetime | None = None, limit: int = 1000) -> list[Document]:
        # Document ids are the percent-quoted keys, and quoting keeps a prefix a prefix: one
        # range query on the id, in id order, a page at a time (lapsed documents and
        # idempotency records are skipped here, so no composite index is needed).
        from google.cloud.firestore_v1.base_query import FieldFilter
        from google.cloud.firestore_v1.field_path import FieldPath

        moment = now or datetime.now(timezone.utc)
        collection = self.client.collection(self.collection)
        low = quote(prefix, safe="")
        name = FieldPath.document_id()
        query = (collection.where(filter=FieldFilter(name, ">=", collection.document(low)))
                 .where(filter=FieldFilter(name, "<", collection.document(low + "\x7f")))
                 .order_by(name))
        found: list[Document] = []
        page = max(min(limit, 300), 1)
        last: Any = None
        while len(found) < limit:
            paged = (query.start_after(last) if last is not None else query).limit(page)
            with translated(f"Firestore store scan of {prefix!r} in {self.collection!r}"):
                snapshots = list(paged.stream(timeout=self.timeout.total_seconds()))
            for snapshot in snapshots:
                document = _document(unquote(snapshot.id), snapshot, moment)
                if document is not None:
                    found.append(document)
            if len(snapshots) < page:
                break
            last = snapshots[-1]
        return found[:max(limit, 0)]

    def load_many(self, keys: Sequence[str], *, now: datetime | None = None) -> dict[str, Document]:
        moment = now or datetime.now(timezone.utc)
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Document] = {}
        for start in range(0, len(wanted), 300):
            with translated(f"Firestore store read of {len(wanted)} documents in {self.collection!r}"):
                snapshots = list(self.client.get_all([self._doc(k) for k in wanted[start:start + 300]],
                                                     timeout=self.timeout.total_seconds()))
            for snapshot in snapshots:
                document = _document(unquote(snapshot.id), snapshot, moment)
                if document is not None:
                    found[document.key] = document
        return found

    def add_member(self, key: str, member: int, *, expires_at: datetime, now: datetime | None = None) -> int:
        # An array union is atomic and adds a member once; the read after it sees at least
        # this write, so of writers racing to add the last members, the last to write sees
        # them all (others may too: callers decide who acts with a conditional write)
        from google.cloud.firestore_v1 import ArrayUnion

        doc = self._doc(key)
        timeout = self.timeout.total_seconds()
        with translated(f"Firestore store add to the set {key!r} in {self.collection!r}"):
            doc.set({_MEMBERS: ArrayUnion([member]), TTL_FIELD: expires_at}, merge=True, timeout=timeout)
            snapshot = doc.get(timeout=timeout)
        return len((snapshot.to_dict() or {}).get(_MEMBERS, []))

    def members(self, key: str, *, now: datetime | None = None) -> frozenset[int]:
        with translated(f"Firestore store read of {key!r} in {self.collection!r}"):
            snapshot = self._doc(key).get(timeout=self.timeout.total_seconds())
        fields = snapshot.to_dict() or {} if snapshot.exists else {}
        expires_at = _utc(fields.get(TTL_FIELD))
        if expires_at is None or expires_at <= (now or datetime.now(timezone.utc)):
            return frozenset()
        return frozenset(int(n) for n in fields.get(_MEMBERS, []))

    def delete(self, key: str) -> None:
        with translated(f"Firestore store delete of {key!r} in {self.collection!r}"):
            self._doc(key).delete(timeout=self.timeout.total_seconds())

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"<FirestoreStore {self.project}/{self.collection}>"


def _document(key: str, snapshot: Any, now: datetime) -> Document | None:
    fields = snapshot.to_dict() or {} if snapshot.exists else {}
    if "version" not in fields:
        return None
    expires_at = _utc(fields.get(TTL_FIELD)) or datetime.fromtimestamp(0, timezone.utc)
    return Document(key, int(fields["version"]), fields["doc"], expires_at) if expires_at > now else None


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _record(key: str, fields: dict[str, Any]) -> Record:
    return Record(key=key, status=Status(fields.get("status", Status.RELEASED.value)), token=fields.get("token"),
                  runs=int(fields.get("runs", 0)), lease_until=_utc(fields.get("lease_until")),
                  expires_at=_utc(fields.get(TTL_FIELD)) or datetime.fromtimestamp(0, timezone.utc),
                  job_type=fields.get("job_type"), job_id=fields.get("job_id"), value=fields.get("value"),
                  completed_at=_utc(fields.get("completed_at")))


def _fields(record: Record) -> dict[str, Any]:
    return {"status": record.status.value, "token": record.token, "runs": record.runs,
            "lease_until": record.lease_until, TTL_FIELD: record.expires_at, "job_type": record.job_type,
            "job_id": record.job_id, "value": record.value, "completed_at": record.completed_at}


def from_url(url: str, *, client: Any = None) -> FirestoreStore:
    """Open ``firestore://PROJECT/COLLECTION[?database=...&timeout=...]``; no SDK call yet."""
    parts = urlsplit(url)
    if parts.scheme != "firestore":
        raise ConfigurationError(f"not a firestore:// URL: {url!r}")
    project, collection = parts.netloc, parts.path.strip("/")
    if not project or not collection:
        raise ConfigurationError(f"store URL {url!r}: write firestore://PROJECT/COLLECTION")
    options = parse_options("firestore", parts.query, OPTIONS)
    return FirestoreStore(project, collection, database=options.get("database") or None, client=client,
                          timeout=parse_timeout("firestore", options.get("timeout")))
