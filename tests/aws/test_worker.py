"""The core worker on SQS (moto): long polling, concurrency, heartbeat, graceful stop."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from cloudqueue_aws import SQSBackend
from pydantic import BaseModel

import cloudqueue as cq


class Item(BaseModel):
    n: int


def test_worker_runs_jobs_concurrently(sqs: Any, make_queue: Any) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    together = threading.Barrier(3, timeout=20)  # passes only when three jobs run at once
    done: list[int] = []

    @app.job
    def work(payload: Item) -> None:
        together.wait()
        done.append(payload.n)

    work.enqueue_many([Item(n=n) for n in range(6)])
    stats = app.worker(concurrency=3, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    assert sorted(done) == list(range(6))
    assert stats.succeeded == 6
    assert app.backend.stats().waiting == 0


def test_heartbeat_keeps_a_long_job_hidden_from_other_consumers(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(visibility_timeout=timedelta(seconds=2))
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    started, finish = threading.Event(), threading.Event()
    attempts: list[int] = []

    @app.job
    def slow(payload: Item, ctx: cq.JobContext) -> None:
        attempts.append(ctx.attempt)
        started.set()
        finish.wait(30)

    slow.enqueue(Item(n=1))
    worker = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False,
                        visibility_timeout=timedelta(seconds=2), heartbeat=timedelta(milliseconds=400))
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        assert started.wait(20)
        other = SQSBackend(pair.url, client=sqs)
        stolen = []
        for _ in range(4):  # well past the queue's 2 s visibility timeout
            stolen += other.receive(max_messages=10, wait=timedelta(seconds=1))
        assert stolen == []
    finally:
        finish.set()
        worker.stop()
        runner.join(30)
    assert attempts == [1]
    stats = app.backend.stats()
    assert (stats.waiting, stats.in_flight) == (0, 0)


def test_graceful_stop_gives_back_what_it_received_but_did_not_start(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(visibility_timeout=timedelta(seconds=60))
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    ran: list[int] = []

    @app.job
    def work(payload: Item) -> None:
        ran.append(payload.n)

    worker = app.worker(concurrency=2, poll_wait=timedelta(seconds=5), handle_signals=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    time.sleep(0.5)  # let it start its long poll on the empty queue
    worker.stop()
    work.enqueue(Item(n=7))  # arrives during the poll, after the stop
    runner.join(30)
    assert ran == []
    assert worker.stats.released == 1
    # back at once, not after the queue's 60 s visibility timeout
    [again] = app.backend.receive(max_messages=10)
    assert again.attempt == 2


def test_fifo_worker_runs_each_group_in_order(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs))
    seen: dict[str, list[int]] = {"a": [], "b": []}
    failed_once: set[int] = set()

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
    def step(payload: Item, ctx: cq.JobContext) -> None:
        group = "a" if payload.n < 10 else "b"
        if payload.n == 11 and payload.n not in failed_once:
            failed_once.add(payload.n)
            raise RuntimeError("transient")
        seen[group].append(payload.n)

    for n in (1, 2, 3, 11, 12, 13):
        step.enqueue(Item(n=n), ordering_key="a" if n < 10 else "b")
    worker = app.worker(concurrency=4, poll_wait=timedelta(seconds=1), handle_signals=False)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        for _ in range(300):  # until all six ran (the retry of 11 waits 1 s), at most 30 s
            if len(seen["a"]) + len(seen["b"]) == 6:
                break
            time.sleep(0.1)
    finally:
        worker.stop()
        runner.join(30)
    assert seen == {"a": [1, 2, 3], "b": [11, 12, 13]}
    assert failed_once == {11}


def test_closing_a_fifo_backend_gives_back_the_messages_it_held(sqs: Any, make_queue: Any) -> None:
    pair = make_queue(fifo=True, visibility_timeout=timedelta(seconds=60))
    backend = SQSBackend(pair.url, client=sqs)
    for n in range(3):
        backend.send([cq.OutgoingMessage(body=b'{"n":%d}' % n, job_id=f"j{n}", job_type="step",
                                         ordering_key="g")])
    [head] = backend.receive(max_messages=10)  # the other two wait behind it, received
    assert head.body == b'{"n":0}'
    backend.release(head)  # the head goes back, and the two behind it with it
    assert _visible(sqs, pair.url) == 3

    [head] = backend.receive(max_messages=10)
    backend.close()  # a stopping consumer: what it held goes back at once
    assert _visible(sqs, pair.url) == 2


def _visible(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])
