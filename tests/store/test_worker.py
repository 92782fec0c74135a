"""The worker on SQS (moto server) with a DynamoDB store: a job longer than its message's
visibility keeps its claim through the heartbeat, and a copy that arrives meanwhile waits,
then is acknowledged unrun."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.base import OutgoingMessage
from cloudqueue.store import Status

from .stores import dynamodb_endpoint, dynamodb_table


class Order(BaseModel):
    order_id: str


def test_a_long_job_keeps_its_claim_and_its_copy_never_runs(request: pytest.FixtureRequest) -> None:
    store_endpoint = dynamodb_endpoint(request)
    import boto3
    from cloudqueue_aws import SQSBackend, ensure_queue

    sqs_endpoint = request.getfixturevalue("moto_server")
    sqs = boto3.client("sqs", endpoint_url=sqs_endpoint, region_name="us-east-1")
    pair = ensure_queue(f"store-w-{uuid.uuid4().hex[:10]}", client=sqs, visibility_timeout=timedelta(seconds=1))
    table = dynamodb_table(store_endpoint)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs),
                 store=f"dynamodb://{table}?region=us-east-1&endpoint_url={store_endpoint}")
    running = threading.Lock()
    runs: list[str] = []
    overlaps: list[str] = []
    copy_sent = threading.Event()

    @app.job
    def pack(payload: Order) -> None:
        if not running.acquire(blocking=False):
            overlaps.append(payload.order_id)
            return
        try:
            runs.append(payload.order_id)
            copy_sent.wait(10)
            time.sleep(3)  # three visibility windows: only the heartbeat keeps message and claim
        finally:
            running.release()

    message: Any = pack.message(Order(order_id="o-1"), idempotency_key="pack-o-1")
    pack.enqueue(Order(order_id="o-1"), idempotency_key="pack-o-1")
    worker = app.worker(concurrency=2, poll_wait=timedelta(seconds=0.2), handle_signals=False)
    thread = threading.Thread(target=worker.run, kwargs={"until_empty": True})
    thread.start()
    try:
        for _ in range(200):
            if runs:
                break
            time.sleep(0.05)
        assert runs == ["o-1"]
        # a second producer's copy, received by the other consumer while the first runs
        app.backend.send([OutgoingMessage(body=message.body, job_id="copy", job_type="pack")])
        copy_sent.set()
    finally:
        thread.join(60)
    assert not thread.is_alive()
    assert runs == ["o-1"] and overlaps == []
    assert worker.stats.succeeded == 1 and worker.stats.skipped == 1
    assert worker.stats.deferred >= 1  # it came while the claim was held, and waited
    record = app.store_record(idempotency_key="pack-o-1")
    assert record is not None and record.status is Status.COMPLETED and record.runs == 1
    app.close()
    for url in (pair.url, pair.dead_letter_url):
        sqs.delete_queue(QueueUrl=url)
    sqs.close()
