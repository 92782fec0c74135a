"""SQS enqueue throughput against moto's server on loopback: messages per second.

``job.enqueue_many`` (the SQS backend packs SendMessageBatch calls of up to ten,
size-aware; the core sends up to ``send_concurrency`` of them at once) against a naive
boto3 ``send_message`` loop, and ``job.enqueue`` one at a time. Every row sends the same
envelopes (the naive loop sends bodies built beforehand, so it pays no validation or
serialization at all). A fourth row sends those bodies with ``send_message_batch`` by hand,
ten a call and a queue's calls at once: what batching itself reaches on this server, the
ceiling for any client. The rows alternate within each round; medians of ``--runs``
rounds.

Queue depth: for every message it receives, moto's SendMessage reads the queue's
attributes, which counts the messages in the queue by scanning them all, so a send
costs time in proportion to the queue's depth (real SQS has no such cost). Every row
therefore sends ``--per-queue`` messages to each queue of its own, created beforehand
and deleted afterwards, so every row meets the same shallow queues. ``--per-queue 20``
(the default) is one ``enqueue_many`` of two SendMessageBatch calls per queue, sent at
once; ``--per-queue 10`` is a single call (nothing to overlap); deeper queues let more
calls overlap but shrink every ratio, as moto's cost per message grows with depth.

The server is moto's server on 127.0.0.1 on a free port, started here and stopped at
the end: by default in a process of its own (``python -m moto.server``), so its work
runs beside the client's as a real queue service's does; ``--server thread`` runs
ThreadedMotoServer in this process instead (as the test suite does), where client and
server share one GIL and concurrent sends have nothing to overlap. moto's server is
CPU-bound Python: on a busy machine with few cores it, not the client, sets the pace.

    python -m bench.sqs_enqueue [--messages 500] [--per-queue 20] [--runs 5] [--server process]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from pydantic import BaseModel

from ._table import interleaved_medians, print_table

BATCHED = "cloudqueue enqueue_many"
ONE_BY_ONE = "cloudqueue enqueue, one by one"
NAIVE = "boto3 send_message loop"
RAW_BATCHES = "boto3 send_message_batch, by hand"
TARGET = 8.0  # DESIGN.md section 7


class Receipt(BaseModel):
    to: str
    order_id: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server(*, in_process: bool = False) -> Iterator[str]:
    """moto's SQS as a real HTTP server on a free loopback port; yields its endpoint URL.

    By default the server runs in a process of its own (``python -m moto.server``), as a
    real queue service runs apart from its clients; ``in_process`` starts moto's
    ThreadedMotoServer in this process instead, sharing its GIL with the client.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit('bench.sqs_enqueue needs moto\'s server: pip install "moto[server]"') from None

    port = free_port()
    if in_process:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()
        return
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"moto server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def sqs_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def payloads(count: int) -> list[Receipt]:
    return [Receipt(to=f"user{n}@example.com", order_id=str(10_000 + n)) for n in range(count)]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


class Round:
    """One round of one row: fresh queues (one per chunk), made before the clock starts."""

    def __init__(self, client: Any, names: Iterator[str], chunk_count: int) -> None:
        self.client = client
        self.urls: list[str] = [client.create_queue(QueueName=next(names))["QueueUrl"]
                                for _ in range(chunk_count)]

    def apps(self) -> list[Any]:
        """An app per queue, each with the ``send_receipt`` job, its queue details looked up."""
        from cloudqueue_aws import SQSBackend

        import cloudqueue as cq

        jobs = []
        for url in self.urls:
            app = cq.App("bench", backend=SQSBackend(url, client=self.client))

            @app.job
            def send_receipt(payload: Receipt) -> None:
                pass

            app.backend.capabilities  # noqa: B018 - GetQueueAttributes once, off the clock
            jobs.append(send_receipt)
        return jobs

    def count(self) -> int:
        total = 0
        for url in self.urls:
            attrs = self.client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            total += int(attrs["ApproximateNumberOfMessages"])
        return total

    def delete(self) -> None:
        for url in self.urls:
            self.client.delete_queue(QueueUrl=url)


def _send_batch(client: Any, url: str, entries: list[dict[str, str]]) -> None:
    failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    assert not failed, failed


#: the by-hand row's threads, as many as enqueue_many's at most (send_concurrency)
pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-batches")


def measure(client: Any, names: Iterator[str], row: str, items: list[Receipt],
            bodies: list[str], per_queue: int) -> float:
    """Messages per second for one row, one round."""
    parts = chunks(items, per_queue)
    body_parts = chunks(bodies, per_queue)
    queues = Round(client, names, len(parts))
    try:
        jobs = queues.apps()
        send = client.send_message
        start = time.perf_counter()
        if row == BATCHED:
            for job, part in zip(jobs, parts, strict=True):
                job.enqueue_many(part)
        elif row == ONE_BY_ONE:
            for job, part in zip(jobs, parts, strict=True):
                for payload in part:
                    job.enqueue(payload)
        elif row == RAW_BATCHES:  # the same bodies, ten a call, the calls of a queue at once
            for url, texts in zip(queues.urls, body_parts, strict=True):
                calls = [[{"Id": str(n), "MessageBody": text} for n, text in enumerate(texts[at:at + 10])]
                         for at in range(0, len(texts), 10)]
                list(pool.map(partial(_send_batch, client, url), calls))
        else:
            for url, texts in zip(queues.urls, body_parts, strict=True):
                for text in texts:
                    send(QueueUrl=url, MessageBody=text)
        elapsed = time.perf_counter() - start
        sent = queues.count()
        assert sent == len(items), f"{row}: {sent} of {len(items)} messages arrived"
    finally:
        queues.delete()
    for job in jobs:
        job.app.close()
    return len(items) / elapsed


def envelopes(items: list[Receipt]) -> list[str]:
    """The envelopes cloudqueue would send for ``items``, as SQS message bodies."""
    import cloudqueue as cq

    app = cq.App("bench", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt) -> None:
        pass

    return [send_receipt.message(item).body.decode() for item in items]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=500, help="messages per row per round")
    parser.add_argument("--per-queue", type=int, default=20, help="messages sent to each fresh queue")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="moto server in a process of its own (default) or a thread of this one")
    args = parser.parse_args(argv)
    items = payloads(args.messages)
    bodies = envelopes(items)
    rows_in_order = (BATCHED, RAW_BATCHES, ONE_BY_ONE, NAIVE)
    with moto_server(in_process=args.server == "thread") as endpoint:
        client = sqs_client(endpoint)
        names = (f"bench-{n}" for n in itertools.count())
        measure(client, names, BATCHED, items[:10], bodies[:10], args.per_queue)  # warm up
        rows = interleaved_medians(args.runs, {
            row: partial(measure, client, names, row, items, bodies, args.per_queue)
            for row in rows_in_order})
        client.close()
    size = len(bodies[0].encode())
    print_table(f"SQS enqueue against moto server on loopback, {args.messages} messages of "
                f"{size} bytes, {args.per_queue} per fresh queue, server in "
                f"{'this process' if args.server == 'thread' else 'its own process'} "
                f"(median of {args.runs})",
                "messages/s", rows, higher_is_better=True, against=NAIVE)
    ratio = dict(rows)[BATCHED] / dict(rows)[NAIVE]
    ceiling = dict(rows)[RAW_BATCHES] / dict(rows)[NAIVE]
    print(f"  {BATCHED} is {ratio:.2f}x the naive loop (target: >= {TARGET:.0f}x); batches sent by "
          f"hand reach {ceiling:.2f}x on this server, and {BATCHED} {ratio / ceiling:.2f}x of that")


if __name__ == "__main__":
    main()
