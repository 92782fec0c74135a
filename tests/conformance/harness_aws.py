"""The SQS backend under the conformance suite, on moto running as a real HTTP server.

Each test gets a fresh queue and dead-letter queue (moto slows down with deep queues),
a 2 s visibility timeout and real time: ``advance`` sleeps.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import cloudqueue as cq
from tests.conftest import missing_component

from .harness import Harness

#: conformance tests that enqueue with a delay, which SQS FIFO queues cannot carry
_NEEDS_MESSAGE_DELAY = frozenset({"test_delay_holds_the_job_back_until_due",
                                  "test_stats_count_waiting_delayed_and_dead_letters"})


class SQSHarness(Harness):
    """A fresh SQS queue pair on moto."""

    store_kind = "dynamodb"

    def __init__(self, endpoint: str, *, fifo: bool) -> None:
        import boto3
        from cloudqueue_aws import SQSBackend

        self.name = "sqs-fifo" if fifo else "sqs"
        self.client: Any = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        self.fifo = fifo
        self.pairs: list[Any] = []
        self.pair = self._new_pair()
        self.backend = SQSBackend(self.pair.url, client=self.client)

    def _new_pair(self) -> Any:
        from cloudqueue_aws import ensure_queue

        name = f"cq-{uuid.uuid4().hex[:16]}" + (".fifo" if self.fifo else "")
        pair = ensure_queue(name, client=self.client, max_receive_count=10,
                            visibility_timeout=self.visibility_timeout)
        self.pairs.append(pair)
        return pair

    def other_queue(self) -> cq.Backend:
        from cloudqueue_aws import SQSBackend

        return SQSBackend(self._new_pair().url, client=self.client)

    def advance(self, delta: timedelta) -> None:
        time.sleep(delta.total_seconds())

    def run_due(self, app: cq.App, queues: list[str] | None = None) -> cq.DrainReport:
        return app.drain(queues=queues)

    def close(self) -> None:
        super().close()
        for pair in self.pairs:
            for url in (pair.url, pair.dead_letter_url):
                with contextlib.suppress(Exception):
                    self.client.delete_queue(QueueUrl=url)
        self.client.close()


def _factory(fifo: bool) -> Any:
    @contextlib.contextmanager
    def build(request: pytest.FixtureRequest) -> Iterator[Harness]:
        try:
            import boto3  # noqa: F401
        except ImportError:
            missing_component("boto3", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
        if fifo and request.node.originalname in _NEEDS_MESSAGE_DELAY:
            pytest.skip("sqs-fifo: SQS FIFO queues have no per-message delay (DelaySeconds), so "
                        "the sqs backend refuses delays on them with UnsupportedFeature")
        endpoint = request.getfixturevalue("moto_server")
        harness = SQSHarness(endpoint, fifo=fifo)
        try:
            yield harness
        finally:
            harness.close()
    return build


HARNESSES = {"sqs": _factory(fifo=False), "sqs-fifo": _factory(fifo=True)}
