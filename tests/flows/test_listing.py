"""Listing flows: ``Store.scan`` on every store, ``list_flows`` newest first, chunk progress
in a flow's view."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import chunks
from cloudqueue.flows import list_flows, render, with_progress
from cloudqueue.store import Store
from cloudqueue.testing import FakeClock
from tests.flows.test_documents import MakeStore
from tests.store.stores import STORES, store_url

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TTL = timedelta(hours=1)


def test_scan_lists_the_live_documents_under_a_prefix_and_nothing_else(make_store: MakeStore) -> None:
    store = make_store()
    for name in ("b", "a", "c/d"):
        assert store.save(f"shop/flow/{name}", f'"{name}"', version=1, expires_at=NOW + TTL, now=NOW)
    assert store.save("shop/flow/e", "2", version=1, expires_at=NOW + timedelta(seconds=5), now=NOW)
    assert store.save("shop/flow/a", '"a2"', version=2, expires_at=NOW + TTL, now=NOW)
    assert store.save("shop/chunks/x", "0", version=1, expires_at=NOW + TTL, now=NOW)
    assert store.save("other/flow/z", "0", version=1, expires_at=NOW + TTL, now=NOW)
    # an idempotency record under the same prefix is no document
    store.claim("shop/flow/record", token="t", now=NOW, lease_until=NOW + TTL, expires_at=NOW + TTL)

    later = NOW + timedelta(seconds=10)  # "e" has lapsed by then
    found = store.scan("shop/flow/", now=later)
    assert sorted((d.key, d.version, d.value) for d in found) == [
        ("shop/flow/a", 2, '"a2"'), ("shop/flow/b", 1, '"b"'), ("shop/flow/c/d", 1, '"c/d"')]
    assert all(d.expires_at == NOW + TTL for d in found)
    assert len(store.scan("shop/flow/", now=later, limit=2)) == 2
    assert [d.key for d in store.scan("shop/flow/c", now=later)] == ["shop/flow/c/d"]
    assert store.scan("nobody/", now=later) == []


def test_scan_pages_through_more_than_one_page_of_items(make_store: MakeStore) -> None:
    store = make_store()
    big = '"' + "x" * 300_000 + '"'  # DynamoDB's Scan pages at 1 MB: five of these need two pages
    for n in range(5):
        assert store.save(f"big/flow/{n}", big, version=1, expires_at=NOW + TTL, now=NOW)
    for n in range(7):
        assert store.save(f"small/flow/{n}", str(n), version=1, expires_at=NOW + TTL, now=NOW)
    assert sorted(d.key for d in store.scan("big/flow/", now=NOW)) == [f"big/flow/{n}" for n in range(5)]
    # a limit below the number stored: Firestore reads it a page of ``limit`` at a time
    assert len(store.scan("small/flow/", now=NOW, limit=3)) == 3
    assert sorted(d.value for d in store.scan("small/flow/", now=NOW, limit=100)) == [str(n) for n in range(7)]


def test_scan_reads_on_past_a_page_of_lapsed_documents(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(4):  # first in key order, and lapsed by the time of the scan
        assert store.save(f"mixed/flow/a{n}", "0", version=1, expires_at=NOW + timedelta(seconds=5), now=NOW)
    for n in range(3):
        assert store.save(f"mixed/flow/b{n}", str(n), version=1, expires_at=NOW + TTL, now=NOW)
    later = NOW + timedelta(seconds=10)
    # Firestore reads pages of ``limit``: the first holds lapsed documents only
    assert sorted(d.key for d in store.scan("mixed/flow/", now=later, limit=2)) in (
        ["mixed/flow/b0", "mixed/flow/b1"], ["mixed/flow/b0", "mixed/flow/b2"], ["mixed/flow/b1", "mixed/flow/b2"])
    assert sorted(d.key for d in store.scan("mixed/flow/", now=later)) == [f"mixed/flow/b{n}" for n in range(3)]


def test_a_store_without_scan_says_so_by_name() -> None:
    class Bare(Store):
        scheme = "bare"

        def claim(self, *args: Any, **kwargs: Any) -> Any: ...
        def extend(self, *args: Any, **kwargs: Any) -> Any: ...
        def complete(self, *args: Any, **kwargs: Any) -> Any: ...
        def release(self, *args: Any, **kwargs: Any) -> Any: ...
        def get(self, *args: Any, **kwargs: Any) -> Any: ...

    with pytest.raises(NotImplementedError, match="Bare cannot list its documents"):
        Bare().scan("x/")
    app = cq.App("bare", backend="memory://", store=Bare())
    with pytest.raises(cq.ConfigurationError, match="Bare cannot list its documents"):
        app.list_flows()


class Part(BaseModel):
    n: int = 0
    fail: bool = False


def _app(store: str, clock: FakeClock) -> tuple[cq.App, Any, Any]:
    app = cq.App("lister", backend="memory://", store=store, clock=clock,
                 retry=cq.Retry(attempts=1))

    @app.job
    def part(payload: Part) -> int:
        if payload.fail:
            raise cq.Permanent(f"part {payload.n} broke")
        return payload.n

    @app.job
    def whole(payload: Part) -> None: ...

    return app, part, whole


@pytest.mark.parametrize("kind", STORES)
def test_list_flows_is_newest_first_and_filters_by_status(kind: str, request: pytest.FixtureRequest) -> None:
    clock = FakeClock(NOW)
    app, part, whole = _app(store_url(kind, request), clock)
    first = app.flow(whole.message(Part()), children=[part.message(Part(n=1))])
    clock.advance(timedelta(seconds=1))
    second = app.flow(whole.message(Part()), children=[part.message(Part(n=2, fail=True))])
    clock.advance(timedelta(seconds=1))
    app.drain()
    third = app.flow(whole.message(Part()),
                     children=[cq.flows.Subflow(whole.message(Part()), children=[part.message(Part(n=3))])])

    listed = app.list_flows()
    assert [f.id for f in listed] == [third, f"{third}.0", second, first]
    assert [f.status for f in listed] == ["running", "running", "failed", "succeeded"]
    assert listed[1].parent_flow == third and listed[0].parent_flow is None
    assert [f.id for f in list_flows(app, status="failed")] == [second]
    assert [f.id for f in app.list_flows(limit=1)] == [third]
    assert app.list_flows(status="parent_failed") == []
    with pytest.raises(cq.ConfigurationError, match="flow status 'done': write one of running, ready"):
        app.list_flows(status="done")
    with pytest.raises(cq.ConfigurationError, match="limit must be a positive int"):
        app.list_flows(limit=0)
    app.close()


class Scan(BaseModel):
    cursor: int = 0


def test_a_chunked_childs_progress_shows_in_its_flow() -> None:
    app = cq.App("chunky", backend="memory://", store="memory://")

    @app.job
    def scan(payload: Scan, ctx: cq.JobContext) -> int:
        more = Scan(cursor=payload.cursor + 5) if payload.cursor < 10 else None
        chunks.advance(scan, ctx, more, progress=5)
        return payload.cursor

    @app.job
    def report(payload: Scan) -> None: ...

    flow_id = app.flow(report.message(Scan()), children=[scan.message(Scan()), report.message(Scan())],
                       flow_id="nightly")
    plain = app.get_flow(flow_id)
    assert [c.key for c in plain.children] == ["cqflow-nightly-0", "cqflow-nightly-1"]
    assert all(c.chunks is None for c in plain.children)

    app.drain()
    flow = with_progress(app, app.get_flow(flow_id))
    chunked, other = flow.children
    assert chunked.chunks is not None and other.chunks is None
    assert (chunked.chunks.chunks, chunked.chunks.progress, chunked.chunks.finished) == (3, 15, True)
    as_dict = flow.to_dict()["children"]
    assert as_dict[0]["chunks"]["progress"] == 15 and as_dict[0]["chunks"]["finished"] is True
    assert as_dict[1]["chunks"] is None
    table = render(flow).splitlines()
    assert "chunks" in table[4]
    assert any(line.startswith("0 ") and "3 (15, finished)" in line for line in table)


def test_a_childs_own_idempotency_key_is_its_chunk_root() -> None:
    app = cq.App("keyed", backend="memory://", store="memory://")

    @app.job
    def scan(payload: Scan, ctx: cq.JobContext) -> None:
        chunks.advance(scan, ctx, Scan(cursor=1) if payload.cursor == 0 else None, progress=7)

    @app.job
    def report(payload: Scan) -> None: ...

    flow_id = app.flow(report.message(Scan()), children=[scan.message(Scan(), idempotency_key="mine")])
    app.drain()
    flow = with_progress(app, app.get_flow(flow_id))
    assert flow.children[0].key == "mine"
    assert flow.children[0].chunks is not None and flow.children[0].chunks.progress == 14


def test_a_document_written_before_keys_were_recorded_falls_back_to_the_default_key() -> None:
    import json

    app = cq.App("old", backend="memory://", store="memory://")

    @app.job
    def scan(payload: Scan) -> None: ...

    flow_id = app.flow(scan.message(Scan()), children=[scan.message(Scan())], flow_id="legacy")
    store = app.store
    assert store is not None
    document = store.load("old/flow/legacy")
    assert document is not None
    plan = store.load("old/flowplan/legacy")
    assert plan is not None
    # the flow as one document, as flows were first kept: its children inline, without keys
    state = {k: v for k, v in json.loads(document.value).items() if k != "total"} | json.loads(plan.value)
    del state["children"][0]["key"]
    assert store.save("old/flow/legacy", json.dumps(state), version=2, expires_at=document.expires_at)
    assert app.get_flow(flow_id).children[0].key == "cqflow-legacy-0"
    app.drain()  # and it finishes as it did
    flow = app.get_flow(flow_id)
    assert flow.status == "succeeded" and [c.status for c in flow.children] == ["succeeded"]


def test_a_listing_past_the_scan_limit_says_it_is_partial(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from cloudqueue import _flow_views

    monkeypatch.setattr(_flow_views, "SCAN_LIMIT", 2)
    app, part, whole = _app("memory://", FakeClock(NOW))
    for _ in range(3):
        app.flow(whole.message(Part()), children=[part.message(Part())])
    assert len(app.list_flows()) == 2
    assert "more than 2 flows in its store" in caplog.text
    found = _flow_views.summary(app)
    assert found.truncated and found.total == 2


def _counting_store(endpoint: str, table: str) -> tuple[Any, list[str]]:
    """A DynamoDB store on ``table`` and the names of the calls its client makes."""
    import boto3
    from cloudqueue_aws.dynamodb import DynamoDBStore

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return DynamoDBStore(table, client=client), calls


def test_dynamodb_lists_flows_by_a_query_of_its_index_not_a_scan(request: pytest.FixtureRequest) -> None:
    from tests.store.stores import dynamodb_endpoint, dynamodb_table

    endpoint = dynamodb_endpoint(request)
    store, calls = _counting_store(endpoint, dynamodb_table(endpoint))
    for n in range(5):
        assert store.save(f"shop/flow/f{n}", str(n), version=1, expires_at=NOW + TTL, now=NOW)
    assert store.save("shop/flowplan/f0", "{}", version=1, expires_at=NOW + TTL, now=NOW)
    store.claim("shop/key/k", token="t", now=NOW, lease_until=NOW + TTL, expires_at=NOW + TTL)
    calls.clear()
    found = store.scan("shop/flow/", now=NOW)
    assert [d.key for d in found] == [f"shop/flow/f{n}" for n in range(5)]
    assert "Scan" not in calls and "Query" in calls
    assert [d.key for d in store.scan("shop/flow/", now=NOW, limit=2)] == ["shop/flow/f0", "shop/flow/f1"]
    store.close()


def test_dynamodb_without_the_index_lists_by_a_scan_and_ensure_table_adds_it(
        request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> None:
    import uuid

    import boto3
    from cloudqueue_aws.dynamodb import PARENT_INDEX, ensure_table

    from tests.store.stores import dynamodb_endpoint

    endpoint = dynamodb_endpoint(request)
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    table = f"cq-old-{uuid.uuid4().hex[:10]}"  # a table made before the index existed
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    store, calls = _counting_store(endpoint, table)
    for n in range(3):
        assert store.save(f"shop/flow/f{n}", str(n), version=1, expires_at=NOW + TTL, now=NOW)
    assert [d.key for d in store.scan("shop/flow/", now=NOW)] == ["shop/flow/f0", "shop/flow/f1", "shop/flow/f2"]
    assert "Scan" in calls
    assert f"has no index {PARENT_INDEX!r}: listing flows scans the whole table" in caplog.text

    ensure_table(table, client=client)
    indexes = client.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    assert [i["IndexName"] for i in indexes] == [PARENT_INDEX]
    fresh, calls = _counting_store(endpoint, table)
    # documents saved before the index was added carry its key, so the index lists them too
    assert [d.key for d in fresh.scan("shop/flow/", now=NOW)] == ["shop/flow/f0", "shop/flow/f1", "shop/flow/f2"]
    assert "Scan" not in calls
    store.close()
    fresh.close()
    client.close()
