"""``cloudqueue stats`` on a real (moto) SQS queue, run as its own process: SQS's own
counts and its dead-letter queue's, and "unknown" for what SQS does not tell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq

ROOT = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    order_id: str


def stats(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", "from cloudqueue.cli import main; main()", "stats", *args],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done


def _fill(sqs: Any, pair: Any, url: str) -> None:
    """Two waiting, one delayed, one in flight, one dead letter."""
    app = cq.App("shop", backend=url)

    @app.job
    def ship(payload: Order) -> None: ...

    ship.enqueue_many([Order(order_id=str(n)) for n in range(3)])
    ship.enqueue(Order(order_id="later"), delay=timedelta(minutes=10))
    received = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=1, VisibilityTimeout=600)
    assert len(received["Messages"]) == 1
    sqs.send_message(QueueUrl=pair.dead_letter_url, MessageBody="poison")
    app.close()


def test_stats_json_reports_the_queue_attributes_and_the_dead_letter_queue(
        moto_server: str, sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="stats")
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}"
    _fill(sqs, pair, url)
    [queue] = json.loads(stats(url, "--json").stdout)["queues"]
    assert queue == {"queue": pair.name, "backend": "sqs", "error": None, "waiting": 2, "in_flight": 1,
                     "delayed": 1, "dead_lettered": 1,
                     # SQS has no such attribute (CloudWatch's ApproximateAgeOfOldestMessage) and
                     # keeps no totals of deleted messages: unknown, not 0
                     "oldest_age_seconds": None, "completed": None, "failed": None}


def test_stats_of_an_app_on_sqs_prints_unknown_where_sqs_cannot_tell(
        moto_server: str, sqs: Any, make_queue: Any, tmp_path: Path) -> None:
    pair = make_queue(prefix="stats")
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}"
    _fill(sqs, pair, url)
    module = f"sqs_stats_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(f"import cloudqueue as cq\napp = cq.App('shop', backend={url!r})\n")
    lines = stats(f"{module}:app", pythonpath=tmp_path).stdout.splitlines()
    assert lines[0].split() == ["queue", "waiting", "in", "flight", "delayed", "dead", "letters", "oldest",
                                "completed", "failed"]
    assert lines[2].split() == [pair.name, "2", "1", "1", "1", "unknown", "unknown", "unknown"]


def test_watch_on_sqs_gives_the_backlog_rate_and_unknown_for_completed_and_failed(
        moto_server: str, sqs: Any, make_queue: Any) -> None:
    pair = make_queue(prefix="stats")
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}"
    _fill(sqs, pair, url)
    lines = stats(url, "--watch=0.2", "--count", "2", "--json").stdout.splitlines()
    second = json.loads(lines[1])["queues"][0]["rates"]
    assert (second["completed_per_second"], second["failed_per_second"]) == (None, None)
    assert second["backlog_per_second"] == 0.0  # nothing moved between the samples


def test_a_queue_without_a_redrive_policy_has_unknown_dead_letters(moto_server: str, sqs: Any) -> None:
    name = f"stats-plain-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
        [queue] = json.loads(stats(f"sqs://{name}?region=us-east-1&endpoint_url={moto_server}",
                                   "--json").stdout)["queues"]
        assert (queue["waiting"], queue["dead_lettered"]) == (1, None)
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
