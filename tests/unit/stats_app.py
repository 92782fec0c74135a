"""Apps for ``cloudqueue stats`` run in a real process, loaded as tests.unit.stats_app:NAME.

``app`` is a named memory queue with a known history, made at import (a named memory queue
lives in the process that opens it, so the CLI process makes its own). ``busy`` keeps a
producer and a consumer running in the background, so its totals grow between samples.
``partial`` reports only what it can tell; ``broken`` cannot be reached.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend

from .models import Receipt

app = cq.App("stats-demo", backend="memory://stats-demo")


@app.job(retry=cq.Retry(attempts=1))
def send_receipt(payload: Receipt) -> None:
    if payload.to == "bounce":
        raise cq.Permanent("mailbox does not exist")


send_receipt.enqueue_many([Receipt(to="bounce" if n < 2 else "ok", order_id=str(n)) for n in range(6)])
app.drain()  # 4 completed, 2 dead-lettered
send_receipt.enqueue(Receipt(to="ok", order_id="later"), delay=timedelta(hours=1))
send_receipt.enqueue_many([Receipt(to="ok", order_id="w1"), Receipt(to="ok", order_id="w2")])

busy = cq.App("busy", backend="memory://stats-busy")


@busy.job
def tick(payload: Receipt) -> None:
    pass


def _churn() -> None:
    while True:
        tick.enqueue(Receipt(to="ok", order_id="t"))
        busy.drain()
        time.sleep(0.005)


threading.Thread(target=_churn, name="stats-churn", daemon=True).start()


class _Partial(MemoryBackend):
    """A queue service that counts what waits and nothing else."""

    def stats(self) -> cq.QueueStats:
        return cq.QueueStats(waiting=5)


class _Broken(MemoryBackend):
    """A queue service that cannot be reached."""

    def stats(self) -> cq.QueueStats:
        raise cq.BackendUnavailable("queue service at 127.0.0.1:9 refused the connection")


partial = cq.App("partial", backend=_Partial(name="stats-partial"))
broken = cq.App("broken", backend=_Broken(name="stats-broken"))
