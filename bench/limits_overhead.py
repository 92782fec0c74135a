"""What job limits cost the worker: the same no-op jobs with and without limits that never bind.

cloudqueue's worker(8) runs 5,000 no-op jobs on the memory backend, plain and with
``rate_limit`` and ``concurrency`` set high enough never to hold a job back, so the rows
differ only by the limit check (a token bucket and a counter under one lock per job).
The peer is dramatiq's StubBroker(8) with and without a ``ConcurrentRateLimiter`` and a
``BucketRateLimiter`` on dramatiq's in-process ``StubBackend`` around each run.

    python -m bench.limits_overhead [--jobs 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import timedelta
from functools import partial

from pydantic import BaseModel

from ._table import interleaved_medians, print_table


class Payload(BaseModel):
    n: int


def cloudqueue_worker(jobs: int, *, limited: bool) -> float:
    import cloudqueue as cq
    from cloudqueue.backends.memory import MemoryBackend

    app = cq.App("bench", backend=MemoryBackend())
    options = {"rate_limit": "1000000/s", "concurrency": 1000} if limited else {}

    @app.job(**options)  # type: ignore[call-overload]
    def noop(payload: Payload) -> None:
        pass

    start = time.perf_counter()
    noop.enqueue_many([Payload(n=n) for n in range(jobs)])
    stats = app.worker(concurrency=8, prefetch=2, poll_wait=timedelta(milliseconds=20),
                       handle_signals=False).run(until_empty=True)
    elapsed = time.perf_counter() - start
    assert stats.succeeded == jobs and stats.deferred == 0, stats
    app.close()
    return jobs / elapsed


def dramatiq_stub(jobs: int, *, limited: bool) -> float:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.rate_limits import BucketRateLimiter, ConcurrentRateLimiter
    from dramatiq.rate_limits.backends import StubBackend

    broker = StubBroker()
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    backend = StubBackend()
    mutex = ConcurrentRateLimiter(backend, "noop-concurrency", limit=1000)
    bucket = BucketRateLimiter(backend, "noop-rate", limit=1_000_000, bucket=1000)

    @dramatiq.actor(max_retries=0)
    def noop(n: int) -> None:
        if limited:
            with mutex.acquire(), bucket.acquire():
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
    "cloudqueue worker(8)": partial(cloudqueue_worker, limited=False),
    "cloudqueue worker(8) + limits": partial(cloudqueue_worker, limited=True),
    "dramatiq StubBroker(8)": partial(dramatiq_stub, limited=False),
    "dramatiq StubBroker(8) + rate limiters": partial(dramatiq_stub, limited=True),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    rows = interleaved_medians(args.runs, {name: partial(fn, args.jobs) for name, fn in PEERS.items()})
    print_table(f"job limits that never bind, {args.jobs:,} no-op jobs (median of {args.runs})",
                "jobs/s", rows, higher_is_better=True, against="cloudqueue worker(8)")
    found = dict(rows)
    ours = found["cloudqueue worker(8) + limits"] / found["cloudqueue worker(8)"]
    theirs = found["dramatiq StubBroker(8) + rate limiters"] / found["dramatiq StubBroker(8)"]
    print(f"  limits keep {ours:.2f} of cloudqueue's throughput; dramatiq's rate limiters keep {theirs:.2f} of its")


if __name__ == "__main__":
    main()
