"""Run the order flow end to end: python -m samples.orders

Starts the web endpoint on loopback, places an order over HTTP, then runs a worker
until every job is done, and prints what happened.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import urllib.request
from datetime import timedelta

from .jobs import app, journal
from .web import make_server

ORDER = {
    "customer_email": "ada@example.com",
    "lines": [{"sku": "BOOK-42", "quantity": 2, "unit_price": "19.90"},
              {"sku": "MUG-7", "quantity": 1, "unit_price": "8.50"}],
}


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    logging.basicConfig(level=logging.WARNING, format="  log: %(levelname)s %(message)s")
    server = make_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/orders"
    print(f"backend: {app.backend!r}")
    print(f"POST {url}")
    request = urllib.request.Request(url, data=json.dumps(ORDER).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        created = json.load(response)
        print(f"  -> {response.status}: order {created['order_id']}, payment "
              f"{created['payment_id']}, total {created['total']}")
    for name, job_id in created["jobs"].items():
        print(f"  enqueued {name:<24} {job_id}")
    server.shutdown()
    server.server_close()

    print("worker: running jobs until the queue is empty")
    stats = app.worker(concurrency=4, poll_wait=timedelta(seconds=1),
                       handle_signals=False).run(until_empty=True)
    for line in journal:
        print(f"  {line}")
    print(f"done: {stats.succeeded} succeeded, {stats.retried} retried, "
          f"{stats.dead_lettered} dead-lettered")
    app.close()
    ok = stats.succeeded == 3 and stats.dead_lettered == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
