"""Stores under test, shared by the store tests and the conformance suite: memory,
DynamoDB on moto server, Firestore on Google's emulator (each started once a session).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from cloudqueue.store import Store
from tests.conftest import missing_component

STORES = ("memory", "dynamodb", "firestore")
MakeStore = Callable[[], Store]


def dynamodb_endpoint(request: pytest.FixtureRequest) -> str:
    """The DynamoDB endpoint (moto, see ``dynamodb_server``), after checking the AWS adapter is there."""
    try:
        import boto3  # noqa: F401
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("boto3 and cloudqueue-aws", 'pip install -e "adapters/aws[test]"')
    endpoint: str = request.getfixturevalue("dynamodb_server")
    return endpoint


def dynamodb_table(endpoint: str) -> str:
    """A fresh store table (TTL on) on moto; returns its name."""
    import boto3
    from cloudqueue_aws.dynamodb import ensure_table

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    name = f"cq-store-{uuid.uuid4().hex[:12]}"
    ensure_table(name, client=client)
    client.close()
    return name


def firestore_host(config: pytest.Config) -> str:
    try:
        import cloudqueue_gcp  # noqa: F401
        from google.cloud import firestore  # noqa: F401
    except ImportError:
        missing_component("google-cloud-firestore", 'pip install -e "adapters/gcp[test]"')
    from tests.gcp import components

    host: str = components.firestore_emulator(config).host
    return host


def store_url(kind: str, request: pytest.FixtureRequest) -> str:
    """A store URL of ``kind`` on a fresh table or collection (for apps under test)."""
    if kind == "memory":
        return "memory://"
    if kind == "dynamodb":
        endpoint = dynamodb_endpoint(request)
        return f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    firestore_host(request.config)
    return f"firestore://cq-test/store-{uuid.uuid4().hex[:12]}"


