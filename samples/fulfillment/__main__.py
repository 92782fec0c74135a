"""Fulfil two orders as flows: python -m samples.fulfillment [--moto]

The first ships once its items are packed and its payment went through (after one retry);
the second has an item out of stock, so its flow fails and it never ships. In memory by
default; with --moto on SQS + DynamoDB, served by a moto server started on loopback.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from decimal import Decimal

from cloudqueue.flows import render


def main(argv: list[str]) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if argv not in ([], ["--moto"]):
        print("usage: python -m samples.fulfillment [--moto]", file=sys.stderr)
        return 2
    server = None
    if argv:  # before the jobs are imported: their app reads $CLOUDQUEUE_URL and $CLOUDQUEUE_STORE_URL
        from ._moto import start

        server = start()
    try:
        return _run()
    finally:
        if server is not None:
            server.stop()


def _run() -> int:
    from .jobs import STOCK, Order, app, fulfill, journal

    logging.basicConfig(level=logging.CRITICAL)  # the journal below says what happened
    print(f"backend: {app.backend!r}, store: {app.store!r}")
    good = fulfill(Order(order_id="A-1", address="1 Main St"), [("BOOK-42", 2), ("MUG-7", 1)], Decimal("48.30"))
    bad = fulfill(Order(order_id="B-2", address="2 Side St"), [("BOOK-42", 1), ("LAMP-3", 1)], Decimal("35.00"))
    print(f"started flows {good} and {bad}")
    print("worker: running jobs until the queue is empty")
    stats = app.worker(concurrency=4, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    for line in journal:
        print(f"  {line}")
    for flow_id in (good, bad):
        print()
        print(render(app.get_flow(flow_id)))
    print()
    print(f"done: {stats.succeeded} succeeded, {stats.retried} retried, {stats.dead_lettered} dead-lettered")
    ok = app.get_flow(good).status == "succeeded" and app.get_flow(bad).status == "failed"

    print()
    print("LAMP-3 is restocked; retrying flow order-B-2 (cloudqueue flows retry does the same)")
    STOCK["LAMP-3"] = 3
    retried = app.retry_flow(bad)
    print(f"redriven from dead letters: {len(retried.redriven)} job(s)")
    seen = len(journal)
    app.worker(concurrency=4, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    for line in journal[seen:]:
        print(f"  {line}")
    print()
    print(render(app.get_flow(bad)))
    ok = ok and app.get_flow(bad).status == "succeeded"
    app.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
