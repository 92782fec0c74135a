"""The app the fault tests run in worker processes: every run writes when it starts and ends.

The queue comes from ``$CLOUDQUEUE_URL``; the run log from ``$CQ_FAULT_RUNS`` (one line per
start and per end, appended atomically, so several processes can share it).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from pydantic import BaseModel

import cloudqueue as cq

app = cq.App("faults", retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))


class Work(BaseModel):
    n: int
    seconds: float = 0.0
    exit: bool = False


def _note(event: str, job_id: str) -> None:
    line = f"{event} {job_id} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["CQ_FAULT_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.job
def work(payload: Work, ctx: cq.JobContext) -> None:
    _note("start", ctx.job_id)
    time.sleep(payload.seconds)
    if payload.exit:
        _note("exit", ctx.job_id)
        raise SystemExit(3)
    _note("end", ctx.job_id)
