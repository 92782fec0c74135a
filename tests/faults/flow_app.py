"""The app the flow fault tests run in worker processes (tests/faults/test_flow_faults.py).

Queue from ``$CLOUDQUEUE_URL``, store from ``$CLOUDQUEUE_STORE_URL``; every run of a child
(``part``) or a parent (``assemble``) writes when it starts and ends to ``$CQ_FAULT_RUNS``,
and a parent also writes the results it read to ``$CQ_FAULT_PARENTS``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

from pydantic import BaseModel

import cloudqueue as cq
from tests.faults.worker_app import _note

app = cq.App("flowfaults", store=os.environ.get("CLOUDQUEUE_STORE_URL") or "memory://",
             retry=cq.Retry(attempts=8, backoff=cq.Backoff.fixed(timedelta(seconds=1))))


class Part(BaseModel):
    flow: str
    n: int
    seconds: float = 0.0


class Assemble(BaseModel):
    flow: str


@app.job
def part(payload: Part, ctx: cq.JobContext) -> int:
    _note("start", ctx.job_id)
    time.sleep(payload.seconds)
    _note("end", ctx.job_id)
    return payload.n


@app.job
def assemble(payload: Assemble, ctx: cq.JobContext) -> None:
    _note("start", ctx.job_id)
    assert ctx.flow is not None
    line = json.dumps({"flow": payload.flow, "results": ctx.flow.results, "pid": os.getpid()}) + "\n"
    fd = os.open(os.environ["CQ_FAULT_PARENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    _note("end", ctx.job_id)
