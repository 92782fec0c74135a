"""One consumer process of the flows-on-SQS test: ``python -m tests.flows.fleet ...``.

Its ``reserve`` children wait until every child of the flow is running (a file each in
``OUT``), so they finish together across processes; every parent message this process
sends is written down in ``OUT/sent-<pid>``.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq


class Item(BaseModel):
    sku: str


class Order(BaseModel):
    order_id: str


def make_app(queue_url: str, sqs_endpoint: str, store: str, out: Path, children: int) -> cq.App:
    import boto3
    from cloudqueue_aws import SQSBackend

    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    return add_jobs(cq.App("fleet", backend=SQSBackend(queue_url, client=sqs), store=store), out, children)


def add_jobs(app: cq.App, out: Path, children: int) -> cq.App:
    """The fleet's jobs and its record of parent sends, on ``app`` (any backend)."""

    class Sent(cq.Middleware):
        def enqueue(self, messages: Any, call_next: Any) -> list[str]:
            with open(out / f"sent-{os.getpid()}", "a") as f:
                f.writelines(f"{m.job_type}\n" for m in messages if m.job_type == "ship")
            return call_next(messages)

    app.add_middleware(Sent())

    @app.job
    def reserve(payload: Item) -> str:
        (out / f"running-{payload.sku}").touch()
        deadline = time.monotonic() + 60
        while len(list(out.glob("running-*"))) < children and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"reserved {payload.sku}"

    @app.job
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        assert ctx.flow is not None
        with open(out / "shipped", "a") as f:
            f.write(f"{payload.order_id} {'|'.join(ctx.flow.results)}\n")

    return app


def main(argv: list[str]) -> None:
    queue_url, sqs_endpoint, store, out, children, concurrency = argv
    app = make_app(queue_url, sqs_endpoint, store, Path(out), int(children))
    worker = app.worker(concurrency=int(concurrency), poll_wait=timedelta(seconds=0.5), handle_signals=False)
    worker.run(until_empty=True)
    app.close()


if __name__ == "__main__":
    main(sys.argv[1:])
