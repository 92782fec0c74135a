"""Chunked jobs: one chunk a run, the next sent with the next cursor, each chunk once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import chunks

ITEMS = list(range(10))


class Scan(BaseModel):
    cursor: int = 0
    size: int = 3


def make_app(*, fail_once_after_advance: int | None = None) -> tuple[cq.App, Any, list[tuple[int, int]]]:
    app = cq.App("chunks", backend="memory://", store="memory://",
                 retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(0))))
    runs: list[tuple[int, int]] = []  # (chunk number, cursor)
    failed: list[int] = []

    @app.job
    def scan(payload: Scan, ctx: cq.JobContext) -> int:
        chunk = chunks.current(ctx)
        runs.append((chunk.number, payload.cursor))
        batch = ITEMS[payload.cursor:payload.cursor + payload.size]
        end = payload.cursor + len(batch)
        more = payload.model_copy(update={"cursor": end}) if end < len(ITEMS) else None
        chunks.advance(scan, ctx, more, progress=len(batch))
        if chunk.number == fail_once_after_advance and not failed:
            failed.append(chunk.number)
            raise RuntimeError("the consumer died after sending the next chunk")
        return end

    return app, scan, runs


def test_a_large_input_is_worked_through_one_chunk_a_run() -> None:
    app, scan, runs = make_app()
    job_id = scan.enqueue(Scan())
    app.drain()
    assert runs == [(0, 0), (1, 3), (2, 6), (3, 9)]
    done = chunks.progress(app, job_id)
    assert done is not None and (done.chunks, done.progress, done.finished) == (4, 10, True)


def test_a_chunk_that_fails_after_sending_the_next_is_retried_and_no_chunk_runs_twice() -> None:
    app, scan, runs = make_app(fail_once_after_advance=1)
    job_id = scan.enqueue(Scan())
    report = app.drain()
    assert report.retried == 1
    # chunk 1 ran again (its work is at least once), and sent chunk 2 again: that copy was skipped
    assert runs in ([(0, 0), (1, 3), (2, 6), (1, 3), (3, 9)], [(0, 0), (1, 3), (1, 3), (2, 6), (3, 9)])
    assert [n for n, _ in runs].count(2) == 1 and [n for n, _ in runs].count(3) == 1
    done = chunks.progress(app, job_id)
    assert done is not None and (done.chunks, done.progress, done.finished) == (4, 10, True)


def test_a_chunked_child_finishes_its_flow_with_its_last_chunk() -> None:
    app, scan, runs = make_app()
    seen: list[Any] = []

    @app.job
    def report(payload: Scan, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        seen.append(ctx.flow.results)

    flow_id = app.flow(report.message(Scan()), children=[scan.message(Scan())])
    app.drain()
    assert len(runs) == 4
    assert seen == [[10]]  # the last chunk's return value
    assert app.get_flow(flow_id).status == "succeeded"


def test_advance_needs_a_store() -> None:
    app = cq.App("nostore", backend="memory://")

    @app.job
    def scan(payload: Scan, ctx: cq.JobContext) -> None:
        chunks.advance(scan, ctx, None)

    scan.enqueue(Scan())
    with pytest.raises(cq.ConfigurationError, match=r"chunks\.advance needs the app's store"):
        app.drain(fail_fast=True)


def test_ctx_advance_needs_the_context_a_consumer_made() -> None:
    from datetime import datetime, timezone

    ctx = cq.JobContext(job_id="j1", job_type="reindex", attempt=1, max_attempts=3,
                        enqueued_at=datetime.now(timezone.utc))
    assert ctx.chunk.number == 0 and ctx.chunk.root == "j1"
    with pytest.raises(cq.ConfigurationError, match=r"job 'reindex': ctx.advance needs the context a consumer "
                                                    r"made for the run; call cloudqueue.chunks.advance"):
        ctx.advance(None)
