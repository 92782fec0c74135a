"""In-memory end to end: enqueue N no-op jobs, then run them all; jobs per second.

Peers, side by side in one process run: taskiq's InMemoryBroker and dramatiq's
StubBroker with its Worker (8 threads). cloudqueue does the real work of every backend:
validate the pydantic payload, serialize the envelope to bytes, store, receive, parse
and validate again, run, acknowledge.

    python -m bench.memory_throughput [--jobs 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from pydantic import BaseModel

from ._table import interleaved_medians, print_table


class Payload(BaseModel):
    n: int


def _cloudqueue(jobs: int, consume: Callable[[Any], int]) -> float:
    """Enqueue ``jobs`` no-op jobs one by one, then ``consume(app)``; jobs per second."""
    import cloudqueue as cq
    from cloudqueue.backends.memory import MemoryBackend

    app = cq.App("bench", backend=MemoryBackend())

    @app.job
    def noop(payload: Payload) -> None:
        pass

    start = time.perf_counter()
    for n in range(jobs):
        noop.enqueue(Payload(n=n))
    done = consume(app)
    elapsed = time.perf_counter() - start
    assert done == jobs, (done, jobs)
    app.close()
    return jobs / elapsed


def cloudqueue_drain(jobs: int) -> float:
    return _cloudqueue(jobs, lambda app: app.drain().succeeded)


def cloudqueue_worker(jobs: int) -> float:
    # prefetch 2 a thread, as dramatiq's Worker takes (its default queue prefetch)
    return _cloudqueue(jobs, lambda app: app.worker(
        concurrency=8, prefetch=2, poll_wait=timedelta(milliseconds=20), handle_signals=False,
    ).run(until_empty=True).succeeded)


def taskiq_inmemory(jobs: int) -> float:
    from taskiq import InMemoryBroker

    broker = InMemoryBroker(max_stored_results=jobs + 1)  # results are awaited below

    @broker.task
    async def noop(n: int) -> None:
        pass

    async def run() -> float:
        await broker.startup()
        start = time.perf_counter()
        tasks = [await noop.kiq(n) for n in range(jobs)]
        for task in tasks:
            await task.wait_result()
        elapsed = time.perf_counter() - start
        await broker.shutdown()
        return jobs / elapsed

    return asyncio.run(run())


def dramatiq_stub(jobs: int) -> float:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)

    @dramatiq.actor(max_retries=0)
    def noop(n: int) -> None:
        pass

    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=10)
    worker.start()
    start = time.perf_counter()
    for n in range(jobs):
        noop.send(n)
    broker.join(noop.queue_name)
    worker.join()
    elapsed = time.perf_counter() - start
    worker.stop()
    broker.close()
    return jobs / elapsed


PEERS = {
    "cloudqueue drain": cloudqueue_drain,
    "cloudqueue worker(8, prefetch 2)": cloudqueue_worker,
    "taskiq InMemoryBroker": taskiq_inmemory,
    "dramatiq StubBroker(8)": dramatiq_stub,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    rows = interleaved_medians(args.runs, {name: partial(fn, args.jobs) for name, fn in PEERS.items()})
    print_table(f"memory backend end to end, {args.jobs:,} no-op jobs (median of {args.runs})",
                "jobs/s", rows, higher_is_better=True, against="cloudqueue drain")
    ours = dict(rows)["cloudqueue drain"]
    for peer in ("taskiq InMemoryBroker", "dramatiq StubBroker(8)"):
        print(f"  cloudqueue drain is {ours / dict(rows)[peer]:.2f}x {peer}")


if __name__ == "__main__":
    main()
