"""Where cloudqueue's time goes on a benchmark's hot path: cProfile's top functions by own time.

    python -m bench.profile memory   # enqueue 10,000 no-op jobs, drain them
    python -m bench.profile worker   # the same jobs through app.worker(concurrency=8, prefetch=2)
    python -m bench.profile lambda   # the Lambda shim on the 1000-record SQS event

``worker`` merges the profiles of the worker's consumer threads into one table.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from datetime import timedelta
from typing import Any

from .lambda_overhead import Context, Receipt, build_event
from .memory_throughput import Payload

TARGETS = ("memory", "worker", "lambda")


def _memory_app() -> tuple[Any, Any]:
    import cloudqueue as cq
    from cloudqueue.backends.memory import MemoryBackend

    app = cq.App("bench", backend=MemoryBackend())

    @app.job
    def noop(payload: Payload) -> None:
        pass

    return app, noop


def memory(jobs: int, profiler: cProfile.Profile) -> str:
    app, noop = _memory_app()
    profiler.enable()
    start = time.perf_counter()
    for n in range(jobs):
        noop.enqueue(Payload(n=n))
    sent = time.perf_counter()
    report = app.drain()
    done = time.perf_counter()
    profiler.disable()
    assert report.succeeded == jobs, report
    return (f"enqueue {(sent - start) / jobs * 1e6:.1f} us/job, drain {(done - sent) / jobs * 1e6:.1f} "
            "us/job (under the profiler)")


#: profiles of the worker's consumer threads, merged into the table by ``main``
_thread_profiles: list[cProfile.Profile] = []


def worker(jobs: int, profiler: cProfile.Profile) -> str:
    from cloudqueue.worker import Worker

    app, noop = _memory_app()
    noop.enqueue_many([Payload(n=n) for n in range(jobs)])
    consume = Worker._consume

    def profiled(self: Worker, *args: Any) -> None:  # each consumer thread profiles itself
        own = cProfile.Profile()
        _thread_profiles.append(own)
        own.enable()
        try:
            consume(self, *args)
        finally:
            own.disable()

    Worker._consume = profiled  # type: ignore[method-assign]
    try:
        run = app.worker(concurrency=8, prefetch=2, poll_wait=timedelta(milliseconds=20),
                         handle_signals=False)
        profiler.enable()
        start = time.perf_counter()
        stats = run.run(until_empty=True)
        elapsed = time.perf_counter() - start
        profiler.disable()
    finally:
        Worker._consume = consume  # type: ignore[method-assign]
    assert stats.succeeded == jobs, stats
    return (f"worker(8, prefetch 2) ran {jobs} jobs in {elapsed:.2f} s "
            f"({elapsed / jobs * 1e6:.1f} us/job), all consumer threads' profiles merged")


def lambda_shim(records: int, profiler: cProfile.Profile) -> str:
    import cloudqueue_aws

    import cloudqueue as cq

    app = cq.App("shop", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt) -> None:
        pass

    handler = cloudqueue_aws.lambda_handler(app)
    event, context = build_event(records), Context()
    handler(event, context)  # warm up
    rounds = 20
    profiler.enable()
    start = time.perf_counter()
    for _ in range(rounds):
        handler(event, context)
    elapsed = time.perf_counter() - start
    profiler.disable()
    return f"{elapsed / rounds / records * 1e6:.2f} us/record (under the profiler), {rounds} events"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--size", type=int, help="jobs (memory, worker: 10000) or records (lambda: 1000)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    profiler = cProfile.Profile()
    if args.target == "memory":
        summary = memory(args.size or 10_000, profiler)
    elif args.target == "worker":
        summary = worker(args.size or 10_000, profiler)
    else:
        summary = lambda_shim(args.size or 1000, profiler)
    print(f"\n{args.target}: {summary}")
    stats = pstats.Stats(profiler)
    for own in _thread_profiles:
        stats.add(own)
    stats.strip_dirs().sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
