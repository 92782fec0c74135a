"""Flows end to end: F flows of C no-op children, each parent reading its children's results; µs a job.

Each row starts ``--flows`` flows of ``--children`` children (a no-op that returns a small
number) and times from the first flow started to the last job done (a parent, where the
flow holds it back), per job run (children and parents). Each parent checks that it read
all its children's results. The same jobs without a flow (the children and the parent
sent plainly, nothing kept) are each system's floor, so a row's cost over its floor is
what the flow costs.

- cloudqueue: memory backend + memory store, ``app.flow(...)`` then ``app.drain()``, and
  with ``app.worker(concurrency=8)``; without a flow, plainly and with idempotency keys
  (the store's guard alone, which every flow child goes through).
- dramatiq: ``group([...]).add_completion_callback(parent)`` with ``GroupCallbacks`` on
  a rate-limiter ``StubBackend`` and the ``Results`` middleware on a results
  ``StubBackend`` (the parent reads its children's results there), ``StubBroker`` +
  ``Worker`` (8 threads).
- Celery: ``chord(children)(parent)``, the ``memory://`` transport and the
  ``cache+memory://`` result backend, a worker in this process (threads pool, 8).

    python -m bench.flows [--flows 200] [--children 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cache, partial
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq

from ._table import interleaved_medians, print_table

#: the rows, their names in the table
FLOW_DRAIN = "cloudqueue app.flow + drain"
FLOW_WORKER = "cloudqueue app.flow + worker(8)"
KEYED_DRAIN = "cloudqueue no flow, keyed (store guard) + drain"
PLAIN_DRAIN = "cloudqueue no flow, plain + drain"
DRAMATIQ_GROUP = "dramatiq group + completion callback (8)"
DRAMATIQ_PLAIN = "dramatiq no group, plain (8)"
CELERY_CHORD = "celery chord, threads(8)"
CELERY_PLAIN = "celery no chord, plain, threads(8)"
#: each system's flow row and its floor
PAIRS = {"cloudqueue": (FLOW_DRAIN, PLAIN_DRAIN), "dramatiq": (DRAMATIQ_GROUP, DRAMATIQ_PLAIN),
         "celery": (CELERY_CHORD, CELERY_PLAIN)}
#: entries celery's ``cache+memory://`` backend keeps (a process-wide LRU cache): a chord
#: whose children's results were evicted before the parent reads them never completes
CELERY_CACHE_ENTRIES = 5000
#: how long a run may take before it is called stuck
DEADLINE = timedelta(minutes=2)


class Child(BaseModel):
    flow: int
    n: int


class Parent(BaseModel):
    flow: int


class Done:
    """Counts the jobs run, checks what each parent read, and wakes the runner at the last job."""

    def __init__(self, flows: int, children: int) -> None:
        self.flows, self.children = flows, children
        self.jobs = flows * (children + 1)
        self._ran = self._parents = 0
        self._lock = threading.Lock()
        self.all = threading.Event()
        self.errors: list[str] = []

    def child(self) -> None:
        self._count()

    def parent(self, flow: int, results: list[Any] | None) -> None:
        """A parent ran; ``results`` is what it read of its children (None: it reads none)."""
        if results is not None and sorted(results) != list(range(self.children)):
            self.errors.append(f"flow {flow}: its parent read {results!r}")
        with self._lock:
            self._parents += 1
        self._count()

    def _count(self) -> None:
        with self._lock:
            self._ran += 1
            if self._ran == self.jobs:
                self.all.set()

    def wait(self, what: str) -> None:
        if not self.all.wait(DEADLINE.total_seconds()):
            raise RuntimeError(f"{what}: {self._ran} of {self.jobs} jobs ran within {DEADLINE}")
        self.check(what)

    def check(self, what: str) -> None:
        if self.errors:
            raise RuntimeError(f"{what}: {len(self.errors)} parents read wrong results: {self.errors[:3]}")
        if self._ran != self.jobs or self._parents != self.flows:
            raise RuntimeError(f"{what}: {self._ran} of {self.jobs} jobs ran, {self._parents} of "
                               f"{self.flows} parents")


def _per_job(flows: int, children: int, elapsed: float) -> float:
    return elapsed / (flows * (children + 1)) * 1e6


# -- cloudqueue ------------------------------------------------------------------------
def _cloudqueue(flows: int, children: int, mode: str) -> float:
    from cloudqueue.backends.memory import MemoryBackend
    from cloudqueue.store import MemoryStore

    done = Done(flows, children)
    store = None if mode == "plain" else MemoryStore()
    app = cq.App("bench", backend=MemoryBackend(), store=store)

    @app.job
    def child(payload: Child) -> int:
        done.child()
        return payload.n

    @app.job
    def parent(payload: Parent, ctx: cq.JobContext) -> None:
        done.parent(payload.flow, ctx.flow.results if ctx.flow is not None else None)

    start = time.perf_counter()
    for f in range(flows):
        kids = [child.message(Child(flow=f, n=n)) for n in range(children)]
        if mode in ("drain", "worker"):
            app.flow(parent.message(Parent(flow=f)), children=kids)
        elif mode == "keyed":
            child.enqueue_many([child.message(Child(flow=f, n=n), idempotency_key=f"c-{f}-{n}")
                                for n in range(children)])
            parent.enqueue(Parent(flow=f), idempotency_key=f"p-{f}")
        else:
            child.enqueue_many(kids)
            parent.enqueue(Parent(flow=f))
    if mode == "worker":
        stats = app.worker(concurrency=8, prefetch=2, poll_wait=timedelta(milliseconds=20),
                           handle_signals=False).run(until_empty=True)
        ran = stats.succeeded
    else:
        ran = app.drain().succeeded
    elapsed = time.perf_counter() - start
    done.check(f"cloudqueue {mode}")
    assert ran == flows * (children + 1), (ran, flows, children)
    app.close()
    return _per_job(flows, children, elapsed)


# -- dramatiq --------------------------------------------------------------------------
def _dramatiq(flows: int, children: int, *, grouped: bool) -> float:
    import dramatiq
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.middleware import GroupCallbacks
    from dramatiq.rate_limits.backends import StubBackend as BarrierBackend
    from dramatiq.results import Results
    from dramatiq.results.backends import StubBackend as ResultsBackend

    done = Done(flows, children)
    broker = StubBroker()
    results = ResultsBackend()
    if grouped:  # Results first: a child's result is stored before its barrier is passed
        broker.add_middleware(Results(backend=results))
        broker.add_middleware(GroupCallbacks(BarrierBackend()))
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)

    @dramatiq.actor(max_retries=0, **({"store_results": True} if grouped else {}))
    def fb_child(flow: int, n: int) -> int:
        done.child()
        return n

    @dramatiq.actor(max_retries=0)
    def fb_parent(flow: int, child_ids: list[str] | None) -> None:
        found = None
        if child_ids is not None:
            found = [results.get_result(dramatiq.Message(queue_name=fb_child.queue_name, actor_name="fb_child",
                                                         args=(), kwargs={}, options={}, message_id=mid))
                     for mid in child_ids]
        done.parent(flow, found)

    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=10)
    worker.start()
    start = time.perf_counter()
    for f in range(flows):
        kids = [fb_child.message(f, n) for n in range(children)]
        if grouped:
            group = dramatiq.group(kids)
            group.add_completion_callback(fb_parent.message(f, [kid.message_id for kid in kids]))
            group.run()
        else:
            for kid in kids:
                broker.enqueue(kid)
            fb_parent.send(f, None)
    done.wait("dramatiq")
    elapsed = time.perf_counter() - start
    broker.join(fb_child.queue_name)
    worker.join()
    worker.stop()
    broker.close()
    return _per_job(flows, children, elapsed)


# -- celery ----------------------------------------------------------------------------
#: the run under way: Celery's worker keeps the first app's tasks in module globals
#: (``celery.app.trace.setup_worker_optimizations``), so every run shares one app
_celery_done: list[Done] = []


@cache
def _celery_app() -> Any:
    from celery import Celery

    app = Celery("bench_flows", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"],
        # the memory transport polls an empty queue this often (1 s by default)
        broker_transport_options={"polling_interval": 0.01},
        worker_hijack_root_logger=False,
    )

    @app.task(name="fb.child")
    def fb_child(flow: int, n: int) -> int:
        _celery_done[-1].child()
        return n

    @app.task(name="fb.parent")
    def fb_parent(found: list[int] | None, flow: int) -> None:
        _celery_done[-1].parent(flow, found)

    return app


def _celery(flows: int, children: int, *, chorded: bool) -> float:
    app = _celery_app()
    fb_child, fb_parent = app.tasks["fb.child"], app.tasks["fb.parent"]
    done = Done(flows, children)
    _celery_done.append(done)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)  # Celery's worker sets the root logger's level
    try:
        return _celery_run(app, fb_child, fb_parent, done, flows, children, chorded=chorded)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def _celery_run(app: Any, fb_child: Any, fb_parent: Any, done: Done, flows: int, children: int, *,
                chorded: bool) -> float:
    from celery import chord
    from celery.backends.cache import CacheBackend
    from celery.contrib.testing.worker import start_worker

    with start_worker(app, pool="threads", concurrency=8, perform_ping_check=False, loglevel="ERROR",
                      shutdown_timeout=30):
        start = time.perf_counter()
        for f in range(flows):
            kids = [fb_child.s(f, n) for n in range(children)]
            if chorded:
                chord(kids)(fb_parent.s(f))
            else:
                for kid in kids:
                    kid.apply_async(ignore_result=True)
                fb_parent.apply_async((None, f), ignore_result=True)
        done.wait("celery")
        elapsed = time.perf_counter() - start
    backend = app.backend
    if isinstance(backend, CacheBackend):  # the next run starts from an empty cache
        backend.client.cache.clear()
    return _per_job(flows, children, elapsed)


def rows(flows: int, children: int, *, celery: bool = True) -> dict[str, Callable[[], float]]:
    """The rows to run, each a call that runs it once and returns µs per job."""
    measures: dict[str, Callable[[], float]] = {
        FLOW_DRAIN: partial(_cloudqueue, flows, children, "drain"),
        FLOW_WORKER: partial(_cloudqueue, flows, children, "worker"),
        KEYED_DRAIN: partial(_cloudqueue, flows, children, "keyed"),
        PLAIN_DRAIN: partial(_cloudqueue, flows, children, "plain"),
        DRAMATIQ_GROUP: partial(_dramatiq, flows, children, grouped=True),
        DRAMATIQ_PLAIN: partial(_dramatiq, flows, children, grouped=False),
    }
    if celery:
        measures[CELERY_CHORD] = partial(_celery, flows, children, chorded=True)
        measures[CELERY_PLAIN] = partial(_celery, flows, children, chorded=False)
    return measures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--children", type=int, default=10, help="children a flow (default 10)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="5 flows of 3 children, one run (shows it runs)")
    parser.add_argument("--no-celery", action="store_true", help="leave Celery's rows out")
    args = parser.parse_args(argv)
    if args.quick:
        args.flows, args.children, args.runs = 5, 3, 1
    if args.flows < 1 or args.children < 1 or args.runs < 1:
        parser.error("--flows, --children and --runs must be at least 1")
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    logging.getLogger("celery").setLevel(logging.ERROR)
    celery = not args.no_celery
    # per chord: a result a child and the parent, the group's and the chord counter
    entries = args.flows * (args.children + 3)
    if celery and entries > CELERY_CACHE_ENTRIES * 0.9:
        print(f"(celery rows left out: {args.flows} chords need {entries:,} entries of cache+memory://, "
              f"which keeps {CELERY_CACHE_ENTRIES:,}; evicted results would leave chords waiting)")
        celery = False
    found = interleaved_medians(args.runs, rows(args.flows, args.children, celery=celery))
    print_table(f"flows end to end, {args.flows} flows x {args.children} no-op children, the parent reading "
                f"their results (median of {args.runs})", "µs/job", found, higher_is_better=False,
                against=FLOW_DRAIN)
    values = dict(found)
    for system, (flow_row, floor) in PAIRS.items():
        if flow_row in values:
            print(f"  {system}: a flow costs {values[flow_row] / values[floor]:.2f}x the same jobs without one")
    ours = values[FLOW_DRAIN]
    for peer in (DRAMATIQ_GROUP, CELERY_CHORD):
        if peer in values:
            print(f"  {peer} takes {values[peer] / ours:.2f}x the time of {FLOW_DRAIN}")


if __name__ == "__main__":
    main()
