"""Fixtures for fault tests: a FaultProxy in front of moto server, clients through it.

moto server comes from tests/conftest.py; the direct SQS client (``sqs``) and fresh queues
(``make_queue``) are the AWS adapter's fixtures from tests/aws/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws.conftest import make_queue, sqs
from tests.faults.proxy import FaultProxy

__all__ = ["fault_proxy", "make_queue", "sqs", "sqs_via_proxy"]


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A FaultProxy in front of moto server, passing traffic; stopped (threads joined) after."""
    with FaultProxy.for_url(moto_server) as proxy:
        yield proxy


@pytest.fixture
def sqs_via_proxy(fault_proxy: FaultProxy, sqs: Any) -> Iterator[Any]:
    """A boto3 SQS client that talks to moto through ``fault_proxy``.

    Bounded: 2 s to connect, 10 s to read, and one retry (botocore's standard mode), so a
    cut endpoint fails within seconds.
    """
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=10, max_pool_connections=16,
                    retries={"mode": "standard", "total_max_attempts": 2})
    client = boto3.client("sqs", endpoint_url=fault_proxy.url, region_name="us-east-1", config=config)
    yield client
    client.close()
