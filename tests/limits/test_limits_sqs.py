"""A job held back by its concurrency limit on SQS (moto server), where every receive counts:
the deferral costs no attempt."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.conftest import missing_component

WAIT = 30.0


class Sync(BaseModel):
    n: int


@pytest.fixture
def queue_url(moto_server: str) -> Iterator[tuple[Any, str]]:
    try:
        import boto3
        from cloudqueue_aws import ensure_queue
    except ImportError:
        missing_component("the AWS adapter", 'pip install -e "adapters/aws[test]"')
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    pair = ensure_queue(f"limits-{uuid.uuid4().hex[:10]}", client=sqs)
    yield sqs, pair.url
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
    sqs.close()


def test_a_deferred_job_keeps_its_attempt_on_a_queue_that_counts_receives(queue_url: tuple[Any, str]) -> None:
    from cloudqueue_aws import SQSBackend

    sqs, url = queue_url
    app = cq.App("limits", backend=SQSBackend(url, client=sqs, wait=timedelta(seconds=1)))
    first_running = threading.Event()
    release = threading.Event()
    runs: list[tuple[int, int]] = []  # (n, attempt)
    deferred = threading.Event()

    class SeeDefers(cq.Middleware):
        def settled(self, result: cq.Result) -> None:
            if result.outcome is cq.Outcome.DEFER:
                deferred.set()

    app.add_middleware(SeeDefers())

    @app.job(concurrency=cq.Concurrency(1, retry_after=timedelta(seconds=1)), retry=cq.Retry(attempts=1))
    def sync(payload: Sync, ctx: cq.JobContext) -> None:
        runs.append((payload.n, ctx.attempt))
        if payload.n == 0:
            first_running.set()
            release.wait(WAIT)

    sync.enqueue(Sync(n=0))
    worker = app.worker(concurrency=2, poll_wait=timedelta(seconds=1), handle_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert first_running.wait(WAIT)
        sync.enqueue(Sync(n=1))  # taken by the idle thread while n=0 holds the only place
        assert deferred.wait(WAIT), "the second job was not held back"
        release.set()
        for _ in range(int(WAIT * 10)):
            if len(runs) == 2:
                break
            threading.Event().wait(0.1)
    finally:
        release.set()
        worker.stop()
        thread.join(WAIT)
    assert sorted(n for n, _ in runs) == [0, 1]
    # SQS received n=1 at least twice; the deferral is taken off: it ran as attempt 1 of 1
    assert all(attempt == 1 for _, attempt in runs), runs
    assert worker.stats.dead_lettered == 0 and worker.stats.deferred >= 1
