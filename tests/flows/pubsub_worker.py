"""A worker process on Pub/Sub for the flow tests:
``python -m tests.flows.pubsub_worker fleet|chunks BACKEND_URL STORE_URL OUT [CHILDREN CONCURRENCY]``.

It serves the jobs of ``tests.flows.fleet`` or ``tests.flows.chunk_worker`` until the file
``OUT/stop`` exists (at most four minutes). It does not use ``run(until_empty=True)``: on
the emulator a subscription's backlog is unknown (no Cloud Monitoring), so a process
cannot tell a queue whose messages another process holds from an empty one.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import cloudqueue as cq

from . import chunk_worker, fleet


def main(argv: list[str]) -> None:
    kind, backend, store, out_dir, *rest = argv
    out = Path(out_dir)
    if kind == "fleet":
        app = fleet.add_jobs(cq.App("fleet", backend=backend, store=store), out, int(rest[0]))
        concurrency = int(rest[1])
    else:
        app = chunk_worker.add_jobs(cq.App("chunky", backend=backend, store=store), out)
        concurrency = 1
    worker = app.worker(concurrency=concurrency, poll_wait=timedelta(seconds=0.5), handle_signals=False)
    thread = threading.Thread(target=worker.run, name="worker")
    thread.start()
    deadline = time.monotonic() + 240
    while not (out / "stop").exists() and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.1)
    worker.stop()
    thread.join(timeout=60)
    app.close()
    sys.exit(0 if (out / "stop").exists() and not thread.is_alive() else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
