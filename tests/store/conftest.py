"""``make_store``: each store under test (see ``tests/store/stores.py``).

``make_store()`` opens the test's store on a fresh table or collection; each call makes
a client of its own (two calls: two consumers racing on the same records).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cloudqueue.store import MemoryStore, Store

from .stores import STORES, MakeStore, dynamodb_endpoint, dynamodb_table, firestore_host


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    opened: list[Store] = []
    kind = request.param
    if kind == "memory":
        shared = MemoryStore()

        def make() -> Store:
            return shared
    elif kind == "dynamodb":
        from cloudqueue_aws.dynamodb import from_url as dynamodb_url

        endpoint = dynamodb_endpoint(request)
        table = dynamodb_table(endpoint)

        def make() -> Store:
            store = dynamodb_url(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
            opened.append(store)
            return store
    else:
        from cloudqueue_gcp.firestore import from_url as firestore_url

        firestore_host(request.config)
        collection = f"store-{uuid.uuid4().hex[:12]}"

        def make() -> Store:
            store = firestore_url(f"firestore://cq-test/{collection}")
            opened.append(store)
            return store
    yield make
    for store in opened:
        store.close()
