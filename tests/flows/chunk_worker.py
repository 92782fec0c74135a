"""A worker process for the killed-chunk test: ``python -m tests.flows.chunk_worker ...``.

Chunk ``STALL`` writes ``OUT/stalled`` and waits (the test kills the process there)
unless ``OUT/go`` exists; every chunk appends "<number> <cursor>" to ``OUT/runs``. The
``report`` job is a parent for a flow whose child is a chunked scan: it appends the
flow's results to ``OUT/reported``.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import chunks

ITEMS = 12
STALL = 2


class Scan(BaseModel):
    cursor: int = 0
    size: int = 3


def make_app(queue_url: str, sqs_endpoint: str, store: str, out: Path) -> cq.App:
    import boto3
    from cloudqueue_aws import SQSBackend

    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    return add_jobs(cq.App("chunky", backend=SQSBackend(queue_url, client=sqs), store=store), out)


def add_jobs(app: cq.App, out: Path) -> cq.App:
    """The chunked ``scan`` job on ``app`` (any backend)."""

    @app.job
    def scan(payload: Scan, ctx: cq.JobContext) -> int:
        chunk = chunks.current(ctx)
        with open(out / "runs", "a") as f:
            f.write(f"{chunk.number} {payload.cursor}\n")
        if chunk.number == STALL and not (out / "go").exists():
            (out / "stalled").touch()
            time.sleep(120)  # killed here
        end = min(payload.cursor + payload.size, ITEMS)
        chunks.advance(scan, ctx, payload.model_copy(update={"cursor": end}) if end < ITEMS else None,
                       progress=end - payload.cursor)
        return end

    @app.job
    def report(payload: Scan, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        with open(out / "reported", "a") as f:
            f.write(f"{ctx.flow.results}\n")

    return app


def main(argv: list[str]) -> None:
    queue_url, sqs_endpoint, store, out = argv
    app = make_app(queue_url, sqs_endpoint, store, Path(out))
    app.worker(concurrency=1, poll_wait=timedelta(seconds=0.5), handle_signals=False).run(until_empty=True)
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
