"""The dashboard's flows pages over HTTP (uvicorn on loopback, httpx): the list and its
filter, a flow with its children, chunk progress and subflow links, and Retry (CSRF,
read-only)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import cloudqueue as cq
import cloudqueue.dashboard
from cloudqueue.backends.memory import MemoryBackend

from .conftest import csrf_token, served
from .flowshop import FlowShop


@pytest.fixture
def shop() -> FlowShop:
    """Order 1 shipped; order 2 failed: its sku "pear" was out of stock."""
    made = FlowShop(MemoryBackend())
    made.out_of_stock.add("pear")
    made.order("1", "apple")
    made.app.drain()
    made.order("2", "apple", "pear")
    made.app.drain()
    assert made.shipped == ["1"]
    return made


@pytest.fixture
def client(shop: FlowShop) -> Iterator[Any]:
    with served(cloudqueue.dashboard.app(shop.app)) as base, httpx.Client(base_url=base) as http:
        yield http


def _rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-flow="([^"]+)">(.*?)</tr>', html, re.S))


def test_the_flows_page_lists_every_flow_and_filters_by_status(client: Any) -> None:
    page = client.get("/flows")
    assert page.status_code == 200
    assert 'id="nav-flows"' in page.text
    rows = _rows(page.text)
    assert set(rows) == {"order-1", "order-1.0", "order-2", "order-2.0"}
    assert re.search(r"status-failed.*?failed.*?<td data-children>2/2</td>", rows["order-2"], re.S)
    assert re.search(r"status-succeeded.*?<td data-children>2/2</td>", rows["order-1"], re.S)
    assert 'href="/flows/order-2"' in rows["order-2.0"]  # a subflow links to its flow
    failed = _rows(client.get("/flows", params={"status": "failed"}).text)
    assert set(failed) == {"order-2", "order-2.0"}
    assert "No flows ready." in client.get("/flows", params={"status": "ready"}).text
    bad = client.get("/flows", params={"status": "<done>"})
    assert bad.status_code == 400 and "&lt;done&gt;" in bad.text and "<done>" not in bad.text


def test_a_flow_page_shows_each_child_with_its_result_error_chunks_and_links(client: Any) -> None:
    page = client.get("/flows/order-2").text
    assert 'id="flow-status">failed</span>' in page
    assert "child 0 (pack" in page  # the reason names the failed subflow
    children = dict(re.findall(r'<tr data-child="(\d)">(.*?)</tr>', page, re.S))
    assert 'href="/flows/order-2.0"' in children["0"]
    assert "3 chunks, progress 120, finished" in children["1"]
    assert "120" in children["1"] and "succeeded" in children["1"]
    sub = client.get("/flows/order-2.0").text
    assert 'id="parent-flow"' in sub and 'href="/flows/order-2"' in sub
    leaves = dict(re.findall(r'<tr data-child="(\d)">(.*?)</tr>', sub, re.S))
    assert "{&#34;reserved&#34;: &#34;apple&#34;}" in leaves["0"]
    # the job's error is text, never HTML
    assert "&lt;b&gt;pear&lt;/b&gt; is out of stock" in leaves["1"] and "<b>pear</b>" not in sub
    missing = client.get("/flows/nope")
    assert missing.status_code == 404 and "has no flow &#39;nope&#39;" in missing.text


def test_retry_sends_the_failed_children_again_and_the_flow_finishes(client: Any, shop: FlowShop) -> None:
    page = client.get("/flows/order-2").text
    assert 'id="retry-flow"' in page
    assert 'id="retry-flow"' not in client.get("/flows/order-1").text  # succeeded: nothing to retry
    shop.out_of_stock.clear()  # the warehouse restocked
    answer = client.post("/flows/order-2/retry", data={"csrf": csrf_token(page)})
    assert answer.status_code == 303
    assert "Sent 1 job(s) of the flow again." in client.get(answer.headers["location"]).text
    shop.app.drain()
    assert shop.shipped == ["1", "2"]
    assert shop.app.get_flow("order-2").status == "succeeded"
    again = client.post("/flows/order-2/retry", data={"csrf": csrf_token(page)})
    assert again.status_code == 409 and "nothing to retry" in again.text


def test_retry_without_the_csrf_token_or_on_a_read_only_dashboard_is_refused(client: Any, shop: FlowShop) -> None:
    assert client.post("/flows/order-2/retry", data={}).status_code == 403
    assert client.post("/flows/order-2/retry", data={"csrf": "forged.token"}).status_code == 403
    assert shop.app.backend.stats().dead_lettered == 1  # nothing redriven
    with served(cloudqueue.dashboard.app(shop.app, read_only=True)) as base, httpx.Client(base_url=base) as http:
        page = http.get("/flows/order-2").text
        assert "<form" not in page and 'id="retry-flow"' not in page
        token = csrf_token(client.get("/flows/order-2").text)
        refused = http.post("/flows/order-2/retry", data={"csrf": token})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert shop.app.backend.stats().dead_lettered == 1
    assert shop.app.get_flow("order-2").status == "failed"
    assert client.post("/flows/nope/retry", data={"csrf": token}).status_code == 404


def test_an_app_without_a_store_has_no_flows_link_and_says_why() -> None:
    app = cq.App("nostore", backend=MemoryBackend())
    with served(cloudqueue.dashboard.app(app)) as base, httpx.Client(base_url=base) as http:
        assert 'id="nav-flows"' not in http.get("/").text
        page = http.get("/flows")
        assert page.status_code == 200 and "has no store, and flows keep their state in one" in page.text
        assert http.get("/flows/x").status_code == 404
