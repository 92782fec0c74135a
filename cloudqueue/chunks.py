"""Chunking: a job that works through a large input a chunk at a time (``chunks.advance``).

    @app.job
    def reindex(payload: Reindex, ctx: cq.JobContext) -> None:
        rows = db.rows(after=payload.cursor, limit=500)      # one chunk, well within the deadline
        index(rows)
        more = payload.model_copy(update={"cursor": rows[-1].id}) if len(rows) == 500 else None
        chunks.advance(reindex, ctx, more, progress=len(rows))

Each chunk is one run of the job; ``advance`` records the chunk's progress and sends the
job again with the payload of the next chunk (the next cursor), or, given None, marks the
work finished. Chunk N+1 carries the idempotency key ``cqchunk-<root>-<N+1>`` (``root``:
the first chunk's job id or key), so a chunk that is delivered again (it failed after
``advance``, or its consumer died) sends the same continuation again, which the store's
guard runs once: no chunk is skipped and none runs twice after succeeding. The progress
is one versioned document per run in the store (version N+1 is written by chunk N, once),
read with ``chunks.progress(app, root)``. A chunked job that is a flow's child finishes
its child of the flow with its last chunk, not its first.

It needs the app's store (``cq.App(..., store=...)``).
"""

from __future__ import annotations

import contextvars
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from .clock import format_time

if TYPE_CHECKING:
    from .app import App
    from .context import JobContext
    from .job import Job

__all__ = ["Chunk", "Progress", "advance", "current", "progress"]

_KEY = re.compile(r"cqchunk-(?P<root>.+)-(?P<number>[0-9]+)")

#: set by the flows' run step while a flow's child runs: (membership, [continued?])
_member: contextvars.ContextVar[tuple[str, list[bool]] | None] = contextvars.ContextVar(
    "cloudqueue_chunk_member", default=None)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Which chunk a run is: ``number`` 0 for the first, ``root`` names the whole run."""

    root: str
    number: int


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a chunked run got: ``chunks`` done, the sum of their ``progress``, and
    whether the last chunk said it was the last (``finished``)."""

    root: str
    job_type: str
    chunks: int
    progress: int
    finished: bool
    updated_at: str


def current(ctx: JobContext) -> Chunk:
    """The chunk this run is (from its idempotency key; the first chunk is its own root)."""
    match = _KEY.fullmatch(ctx.idempotency_key or "")
    if match is None:
        return Chunk(ctx.idempotency_key or ctx.job_id, 0)
    return Chunk(match["root"], int(match["number"]))


def _key(app: App, root: str) -> str:
    return f"{app.name}/chunks/{root}"


def advance(job: Job[Any, Any], ctx: JobContext, next_payload: Any, *, progress: int = 0) -> str | None:
    """Record this chunk and send the next (``next_payload``: its payload, with the next
    cursor), or with None mark the run finished. Returns the next chunk's job id, or None.

    Raises:
        ConfigurationError: the app has no store, or ``ctx`` is not a run of ``job``.
    """
    app = job.app
    store = app.store
    if store is None:
        raise ConfigurationError(f"job {job.name!r}: chunks.advance needs the app's store to run each chunk "
                                 "once; pass cq.App(..., store='memory://') or set $CLOUDQUEUE_STORE_URL")
    if ctx.job_type != job.name:
        raise ConfigurationError(f"chunks.advance({job.name}, ctx, ...) was given the context of job "
                                 f"{ctx.job_type!r}; pass the job that is running")
    chunk = current(ctx)
    now = app.clock.now()
    key = _key(app, chunk.root)
    before = store.load(key, now=now)
    done_before = json.loads(before.value)["progress"] if before is not None and chunk.number > 0 else 0
    from datetime import timedelta

    from .flows import DEFAULT_TTL

    state = {"root": chunk.root, "job_type": job.name, "chunks": chunk.number + 1,
             "progress": done_before + progress, "finished": next_payload is None,
             "updated_at": format_time(now)}
    expires_at = before.expires_at if before is not None and chunk.number > 0 else now + DEFAULT_TTL
    # version N+1 is chunk N's: a redelivered chunk finds it written and changes nothing
    store.save(key, json.dumps(state), version=chunk.number + 1, expires_at=max(expires_at, now + timedelta(days=1)),
               now=now)
    if next_payload is None:
        return None
    message = job.message(next_payload, idempotency_key=f"cqchunk-{chunk.root}-{chunk.number + 1}")
    member = _member.get()
    if member is not None:  # a flow's child: its continuation is that child still
        from .flows import CHILD_ATTRIBUTE, with_attributes

        membership, continued = member
        message = with_attributes(app, message, {CHILD_ATTRIBUTE: membership}, message.idempotency_key or "")
        continued[0] = True
    return app._enqueue([message])[0]


def progress(app: App, root: str) -> Progress | None:
    """How far the chunked run ``root`` got (None: no chunk recorded yet, or lapsed)."""
    store = app.store
    if store is None:
        raise ConfigurationError(f"app {app.name!r} has no store; chunk progress lives there")
    document = store.load(_key(app, root), now=app.clock.now())
    if document is None:
        return None
    state = json.loads(document.value)
    return Progress(root=state["root"], job_type=state["job_type"], chunks=state["chunks"],
                    progress=state["progress"], finished=state["finished"], updated_at=state["updated_at"])
