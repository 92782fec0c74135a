"""``cloudqueue stats`` on Pub/Sub (Google's emulator, backlog from a Monitoring server on
loopback) and Cloud Tasks (the test server), run as its own process: the figures each
service gives, and "unknown" / null for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq

from .conftest import PubSubSetup, TasksSetup

ROOT = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    order_id: str


def stats(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", "from cloudqueue.cli import main; main()", "stats", *args],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "error"})
    assert done.returncode == 0, done.stderr
    return done


def test_pubsub_stats_report_the_monitoring_backlog_and_unknown_for_what_no_one_can_tell(
        pubsub: PubSubSetup, monitoring_server: Any) -> None:
    from cloudqueue_gcp._monitoring import OLDEST_UNACKED, UNDELIVERED

    url = pubsub.url(monitoring=monitoring_server.endpoint)
    [before] = json.loads(stats(url, "--json").stdout)["queues"]
    assert before["waiting"] is None  # nothing sampled yet: unknown, not 0
    monitoring_server.record(pubsub.project, pubsub.subscription, UNDELIVERED, 7)
    monitoring_server.record(pubsub.project, pubsub.subscription, OLDEST_UNACKED, 125)
    monitoring_server.record(pubsub.project, pubsub.dead_subscription, UNDELIVERED, 2)
    [queue] = json.loads(stats(url, "--json").stdout)["queues"]
    # in flight and delayed are known only inside a consuming process; Pub/Sub keeps no
    # totals of acknowledged messages: null, never 0
    assert queue == {"queue": pubsub.topic, "backend": "pubsub", "error": None, "waiting": 7,
                     "in_flight": None, "delayed": None, "dead_lettered": 2, "oldest_age_seconds": 125.0,
                     "completed": None, "failed": None}
    lines = stats(url).stdout.splitlines()
    assert lines[2].split() == [pubsub.topic, "7", "unknown", "unknown", "2", "2m05s", "unknown", "unknown"]


def test_pubsub_watch_frames_show_the_backlog_rate_from_monitoring(
        pubsub: PubSubSetup, monitoring_server: Any) -> None:
    from cloudqueue_gcp._monitoring import UNDELIVERED

    monitoring_server.record(pubsub.project, pubsub.subscription, UNDELIVERED, 3)
    out = stats(pubsub.url(monitoring=monitoring_server.endpoint), "--watch", "0.2", "--count", "2").stdout
    frames = [frame.splitlines() for frame in out.split("\n\n") if frame.strip()]
    assert [frame[1].split()[-3:] for frame in frames] == [["completed/s", "failed/s", "backlog/s"]] * 2
    assert frames[0][3].split()[-3:] == ["-", "-", "-"]
    assert frames[1][3].split()[-3:] == ["unknown", "unknown", "0.0"]


def test_cloud_tasks_stats_count_the_queues_tasks_and_its_dead_letters(
        queues: TasksSetup, http_function: Any, tasks_server: Any) -> None:
    url = queues.url(http_function.url)
    app = cq.App("shop", backend=url)

    @app.job
    def refuse(payload: Order) -> None:
        raise cq.Permanent("no")

    refuse.enqueue_many([Order(order_id="a"), Order(order_id="b")])
    refuse.enqueue(Order(order_id="c"), delay=timedelta(minutes=5))
    [queue] = json.loads(stats(url, "--json").stdout)["queues"]
    assert {k: v for k, v in queue.items() if k != "oldest_age_seconds"} == {
        "queue": queues.queue, "backend": "cloudtasks", "error": None, "waiting": 2, "in_flight": 0,
        "delayed": 1, "dead_lettered": 0, "completed": None, "failed": None}
    assert 0 <= queue["oldest_age_seconds"] < 60
    app.close()
