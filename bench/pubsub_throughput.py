"""Pub/Sub throughput on Google's emulator: cloudqueue against the raw client, msgs/s.

Publish: ``job.enqueue_many`` of ``--jobs`` small jobs against google-cloud-pubsub's own
batching publisher sending the same envelopes (built beforehand, so it pays no
validation or serialization). Consume: ``app.worker(concurrency=4).run(until_empty=True)``
against a raw streaming-pull subscriber (flow control of 1,000) that decodes the JSON,
validates the payload with pydantic and acks each message, stopped when all arrived. The
worker is timed twice in the same run: until ``run`` returns (one empty long poll of
``poll_wait``, 1 s here, after the last job, then the check that nothing is pending), and
until its last job finished, which is what the raw row measures.
Each round publishes to fresh topics; the rows alternate; medians of ``--runs`` rounds.

The emulator is the Cloud SDK's (Java), started here on a free loopback port and stopped
at the end; it runs on the same cores as the client, so on a small machine it sets much
of the pace for both rows alike.

    python -m bench.pubsub_throughput [--jobs 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq

from ._table import interleaved_medians, print_table

EMULATOR_DIR = os.environ.get("PUBSUB_EMULATOR_DIR", "/usr/lib/google-cloud-sdk/platform/pubsub-emulator")
OURS_PUBLISH = "cloudqueue enqueue_many"
RAW_PUBLISH = "google-cloud-pubsub publisher"
OURS_CONSUME = "cloudqueue worker(concurrency=4), until_empty"
OURS_TO_LAST = "cloudqueue worker(concurrency=4), to the last job"
RAW_CONSUME = "raw streaming pull + pydantic"


class Receipt(BaseModel):
    to: str
    order_id: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def emulator() -> Iterator[str]:
    java = shutil.which("java")
    jars = sorted(glob.glob(os.path.join(EMULATOR_DIR, "lib", "cloud-pubsub-emulator-*-all.jar")))
    if java is None or not jars:
        raise SystemExit(f"needs java and the Pub/Sub emulator in {EMULATOR_DIR}")
    host = f"127.0.0.1:{_free_port()}"
    process = subprocess.Popen([java, "-jar", jars[-1], "--host=127.0.0.1", f"--port={host.split(':')[1]}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://{host}/", timeout=2) as answer:
                    if b"Ok" in answer.read():
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the Pub/Sub emulator did not start")
            time.sleep(0.2)
        yield host
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _raw_clients(host: str) -> tuple[Any, Any]:
    import grpc
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return (pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))),
            pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))))


def _fresh(host: str) -> tuple[str, str, str]:
    """A fresh topic and subscription (and a dead-letter topic); their short names."""
    from cloudqueue_gcp import admin

    project, name = "bench-project", f"t{uuid.uuid4().hex[:12]}"
    publisher, subscriber = _raw_clients(host)
    try:
        admin.ensure_topic(project, name, publisher=publisher)
        admin.ensure_topic(project, f"{name}-dead", publisher=publisher)
        subscriber.create_subscription(request={"name": f"projects/{project}/subscriptions/{name}-sub",
                                                "topic": f"projects/{project}/topics/{name}",
                                                "ack_deadline_seconds": 60})
    finally:
        publisher.stop()
        subscriber.close()
    return project, name, f"{name}-sub"


def _app(host: str, project: str, topic: str, subscription: str) -> cq.App:

    return cq.App("bench", backend=f"pubsub://{project}/{topic}?subscription={subscription}"
                                   f"&dead_letter_topic={topic}-dead&emulator={host}")


def measures(host: str, jobs: int) -> tuple[dict[str, Callable[[], float]], dict[str, Callable[[], float]]]:
    payloads = [Receipt(to="a@b.c", order_id=str(n)) for n in range(jobs)]

    def ours_publish() -> float:
        project, topic, sub = _fresh(host)
        app = _app(host, project, topic, sub)

        @app.job
        def receipt(payload: Receipt) -> None: ...

        receipt.enqueue_many(payloads[:10])  # clients made and connected before the clock
        start = time.perf_counter()
        receipt.enqueue_many(payloads)
        elapsed = time.perf_counter() - start
        app.close()
        return jobs / elapsed

    def raw_publish() -> float:
        project, topic, sub = _fresh(host)
        app = _app(host, project, topic, sub)

        @app.job
        def receipt(payload: Receipt) -> None: ...

        bodies = [receipt.message(p).body for p in payloads]
        publisher, subscriber = _raw_clients(host)
        path = f"projects/{project}/topics/{topic}"
        for future in [publisher.publish(path, b) for b in bodies[:10]]:
            future.result()
        start = time.perf_counter()
        futures = [publisher.publish(path, body, cq_type="receipt") for body in bodies]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - start
        publisher.stop()
        subscriber.close()
        return jobs / elapsed

    def filled() -> tuple[Any, Any, str, str]:
        project, topic, sub = _fresh(host)
        app = _app(host, project, topic, sub)
        done = [0, 0.0]  # jobs run, when the last one ended

        @app.job
        def receipt(payload: Receipt) -> None:
            done[0] += 1
            done[1] = time.perf_counter()

        receipt.enqueue_many(payloads)
        return app, done, project, sub

    to_last: list[float] = []

    def ours_consume() -> float:
        app, done, _, _ = filled()
        worker = app.worker(concurrency=4, poll_wait=timedelta(seconds=1), handle_signals=False)
        start = time.perf_counter()
        worker.run(until_empty=True)
        elapsed = time.perf_counter() - start
        app.close()
        to_last.append(done[0] / (done[1] - start))
        return float(done[0]) / elapsed

    def ours_to_last() -> float:
        return to_last.pop()

    def raw_consume() -> float:
        from google.cloud import pubsub_v1

        app, _, project, sub = filled()
        _, subscriber = _raw_clients(host)
        count = [0]
        lock = threading.Lock()
        finished = threading.Event()

        def callback(message: Any) -> None:
            envelope = json.loads(message.data)
            Receipt.model_validate(envelope["data"])
            message.ack()
            with lock:
                count[0] += 1
                if count[0] >= jobs:
                    finished.set()

        start = time.perf_counter()
        future = subscriber.subscribe(f"projects/{project}/subscriptions/{sub}", callback,
                                      flow_control=pubsub_v1.types.FlowControl(max_messages=1000))
        finished.wait(300)
        elapsed = time.perf_counter() - start
        future.cancel()
        try:
            future.result(timeout=30)
        except Exception:
            pass
        subscriber.close()
        app.close()
        return count[0] / elapsed

    return ({OURS_PUBLISH: ours_publish, RAW_PUBLISH: raw_publish},
            {OURS_CONSUME: ours_consume, OURS_TO_LAST: ours_to_last, RAW_CONSUME: raw_consume})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pubsub_throughput")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per row per round")
    parser.add_argument("--runs", type=int, default=5, help="rounds (medians are printed)")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("cloudqueue").setLevel(logging.ERROR)
    with emulator() as host:
        publish, consume = measures(host, args.jobs)
        print_table(f"Pub/Sub emulator: publish {args.jobs} small jobs, msgs/s (median of {args.runs})",
                    "msgs/s", interleaved_medians(args.runs, publish), higher_is_better=True, against=RAW_PUBLISH)
        print_table(f"Pub/Sub emulator: consume {args.jobs} small jobs, msgs/s (median of {args.runs})",
                    "msgs/s", interleaved_medians(args.runs, consume), higher_is_better=True, against=RAW_CONSUME)


if __name__ == "__main__":
    main()
