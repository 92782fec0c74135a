"""Reading flows for people: listing them, a summary for ``stats``, chunk progress per child.

Every read here goes through ``Store.scan`` (listing by key prefix) and ``Store.load``;
nothing is written. A listing reads at most ``SCAN_LIMIT`` flows: beyond that, the
newest-first order and the counts cover the ones read, and say so.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from .clock import parse_time

if TYPE_CHECKING:
    from .app import App
    from .chunks import Progress
    from .flows import Flow
    from .store import Store

__all__ = ["SCAN_LIMIT", "Summary", "listed", "summary", "with_chunks"]

log = logging.getLogger("cloudqueue")

#: the most flow documents one listing reads from the store
SCAN_LIMIT = 5000
#: the most chunk-progress reads in flight for one flow
_READERS = 8


def _scan(app: App) -> tuple[list[dict[str, Any]], bool]:
    """The head of every flow of the app in its store (up to ``SCAN_LIMIT``: their
    children's ends are not in them), and whether there were more."""
    from .flows import _store

    store: Store = _store(app)
    try:
        documents = store.scan(f"{app.name}/flow/", now=app.clock.now(), limit=SCAN_LIMIT + 1)
    except NotImplementedError as exc:
        raise ConfigurationError(str(exc)) from None
    return [json.loads(d.value) for d in documents[:SCAN_LIMIT]], len(documents) > SCAN_LIMIT


def listed(app: App, *, status: str | None = None, limit: int = 50) -> list[Flow]:
    """``cloudqueue.flows.list_flows``: the app's flows, newest first."""
    from .flows import STATUSES

    if status is not None and status not in STATUSES:
        raise ConfigurationError(f"flow status {status!r}: write one of {', '.join(STATUSES)}")
    if not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"list_flows limit must be a positive int, got {limit!r}")
    from .flows import _assemble, _flow

    states, truncated = _scan(app)
    if truncated:
        log.warning("app %s has more than %d flows in its store: the listing covers the first %d the store "
                    "returned, so the newest may be missing", app.name, SCAN_LIMIT, SCAN_LIMIT)
    chosen = [s for s in states if status is None or s["status"] == status]
    chosen.sort(key=lambda s: s["id"])  # started together: a flow before its subflows (``<id>.<i>``)
    chosen.sort(key=lambda s: s["created_at"], reverse=True)
    chosen = chosen[:limit]
    _assemble(app, chosen, app.clock.now())  # the listed flows' plans and children's ends
    return [_flow(state) for state in chosen]


@dataclass(frozen=True, slots=True)
class Summary:
    """The app's flows at a glance (the ``stats`` flows section).

    Attributes:
        counts: flows per status (every status, zeros included).
        oldest_running: the age of the oldest flow still ``running`` (None: none is).
        oldest_running_id: that flow's id.
        truncated: the store held more than ``SCAN_LIMIT`` flows; the counts cover those read.
    """

    counts: dict[str, int]
    oldest_running: timedelta | None
    oldest_running_id: str | None
    truncated: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "total": self.total,
                "oldest_running_age": None if self.oldest_running is None else self.oldest_running.total_seconds(),
                "oldest_running_id": self.oldest_running_id, "truncated": self.truncated}


def summary(app: App, *, now: datetime | None = None) -> Summary:
    """Counts per status and the oldest running flow's age."""
    from .flows import STATUSES

    states, truncated = _scan(app)  # the heads' statuses and times: no plan or end is read
    counts = dict.fromkeys(STATUSES, 0)
    for state in states:
        counts[state["status"]] = counts.get(state["status"], 0) + 1
    running = [s for s in states if s["status"] == "running"]
    oldest = min(running, key=lambda s: (s["created_at"], s["id"])) if running else None
    moment = now or app.clock.now()
    age = max(moment - parse_time(oldest["created_at"]), timedelta(0)) if oldest is not None else None
    return Summary(counts, age, oldest["id"] if oldest is not None else None, truncated)


def with_chunks(app: App, flow: Flow) -> Flow:
    """The flow with ``Child.chunks`` read for each child that is a job (one read each;
    a child that never called ``chunks.advance`` has none)."""
    from .chunks import progress

    roots = [(c.index, c.chunk_root) for c in flow.children if c.chunk_root]
    if not roots:
        return flow

    def read(root: str) -> Progress | None:
        return progress(app, root)

    if len(roots) == 1:
        found = [read(roots[0][1] or "")]
    else:
        with ThreadPoolExecutor(min(_READERS, len(roots)), thread_name_prefix="cloudqueue-flow-view") as pool:
            found = list(pool.map(read, [root or "" for _, root in roots]))
    by_index = {index: p for (index, _), p in zip(roots, found, strict=True)}
    return replace(flow, children=tuple(replace(c, chunks=by_index.get(c.index)) for c in flow.children))
