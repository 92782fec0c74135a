"""The core worker on several SQS queues (moto): strict order, the heartbeat on each
message's own queue, and a graceful stop that gives each message back to its queue."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from cloudqueue_aws import SQSBackend
from pydantic import BaseModel

import cloudqueue as cq


class Item(BaseModel):
    n: int


def _app(sqs: Any, make_queue: Any, **options: Any) -> cq.App:
    critical, default = make_queue(prefix="critical", **options), make_queue(prefix="default", **options)
    return cq.App("shop", queues={"critical": SQSBackend(critical.url, client=sqs),
                                  "default": SQSBackend(default.url, client=sqs)})


def test_a_strict_worker_empties_the_higher_queue_first(sqs: Any, make_queue: Any) -> None:
    app = _app(sqs, make_queue)
    ran: list[str] = []

    @app.job(queue="critical")
    def page(payload: Item) -> None:
        ran.append("critical")

    @app.job
    def ship(payload: Item) -> None:
        ran.append("default")

    ship.enqueue_many([Item(n=n) for n in range(3)])
    page.enqueue_many([Item(n=n) for n in range(3)])
    stats = app.worker(concurrency=1, poll_wait=timedelta(seconds=1),
                       handle_signals=False).run(until_empty=True)
    assert ran == ["critical"] * 3 + ["default"] * 3 and stats.succeeded == 6


def test_the_heartbeat_keeps_a_long_job_on_the_lower_queue_hidden(sqs: Any, make_queue: Any) -> None:
    app = _app(sqs, make_queue, visibility_timeout=timedelta(seconds=2))
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
        other = SQSBackend(app.queue("default").queue_url, client=sqs)  # type: ignore[attr-defined]
        stolen = []
        for _ in range(4):  # well past the queue's 2 s visibility timeout
            stolen += other.receive(max_messages=10, wait=timedelta(seconds=1))
        assert stolen == []
    finally:
        finish.set()
        worker.stop()
        runner.join(30)
    assert attempts == [1]
    stats = app.queue("default").stats()
    assert (stats.waiting, stats.in_flight) == (0, 0)


def test_a_stop_gives_each_unstarted_message_back_to_its_own_queue(sqs: Any, make_queue: Any) -> None:
    app = _app(sqs, make_queue, visibility_timeout=timedelta(seconds=60))
    worker = app.worker(concurrency=1, prefetch=3, poll_wait=timedelta(seconds=1), handle_signals=False)
    ran: list[int] = []

    @app.job(queue="critical")
    def page(payload: Item) -> None:
        ran.append(payload.n)
        worker.stop()

    page.enqueue_many([Item(n=n) for n in range(3)])
    stats = worker.run()
    assert len(ran) == 1 and stats.released == 2
    back = app.queue("critical").receive(max_messages=10, wait=timedelta(seconds=2))
    assert len(back) == 2  # visible again at once, not after the 60 s visibility timeout
