"""The flows pages in a real browser (headless chromium): find the failed flow by its
status, open it, follow a subflow and back, press Retry, and see the flow finish.
On the memory backend and store, and on SQS + DynamoDB (moto server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import cloudqueue.dashboard

from .conftest import BACKINGS, Backing, screenshot, served, wait_for
from .flowshop import FlowShop

pytestmark = pytest.mark.slow


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


@pytest.fixture(params=["memory", "sqs"])
def flow_shop(request: pytest.FixtureRequest) -> Iterator[tuple[str, FlowShop]]:
    backing: Backing = BACKINGS[request.param](request)
    store = "memory://"
    if request.param == "sqs":
        from tests.store.stores import dynamodb_endpoint, dynamodb_table

        endpoint = dynamodb_endpoint(request)
        store = f"dynamodb://{dynamodb_table(endpoint)}?region=us-east-1&endpoint_url={endpoint}"
    shop = FlowShop(backing.backend, store=store)
    try:
        yield request.param, shop
    finally:
        shop.app.close()
        backing.cleanup()


def _drain_until(shop: FlowShop, done: Any, what: str) -> None:
    wait_for(lambda: (shop.app.drain(), done())[1], what, timeout=60, every=0.5)


def test_find_a_failed_flow_open_it_retry_it_and_see_it_finish(browser: Any,
                                                                flow_shop: tuple[str, FlowShop]) -> None:
    kind, shop = flow_shop
    shop.out_of_stock.add("pear")
    shop.order("1", "apple", "plum")
    shop.order("2", "apple", "pear")
    _drain_until(shop, lambda: shop.app.get_flow("order-2").status == "failed"
                 and shop.app.get_flow("order-1").status == "succeeded", "order 1 to ship and order 2 to fail")
    shop.order("3", "fig")  # started, not run: running

    with served(cloudqueue.dashboard.app(shop.app)) as base:
        browser.get(base + "/")
        browser.find_element(*_by("#nav-flows")).click()
        rows = wait_for(lambda: browser.find_elements(*_by("tr[data-flow]")), "the flows to be listed")
        assert [r.get_attribute("data-flow") for r in rows][:2] == ["order-3", "order-3.0"]  # newest first
        assert len(rows) == 6
        if kind == "memory":
            screenshot(browser, "flows")

        from selenium.webdriver.support.ui import Select

        Select(browser.find_element(*_by("#status"))).select_by_value("failed")
        browser.find_element(*_by("#filter-submit")).click()
        wait_for(lambda: "status=failed" in browser.current_url, "the filtered list")
        failed = [r.get_attribute("data-flow") for r in browser.find_elements(*_by("tr[data-flow]"))]
        assert failed == ["order-2", "order-2.0"]
        browser.find_element(*_by('tr[data-flow="order-2"] a')).click()

        assert wait_for(lambda: browser.find_element(*_by("#flow-status")).text, "the flow page") == "failed"
        chunked = browser.find_element(*_by('tr[data-child="1"] [data-chunks]')).text
        assert chunked == "3 chunks, progress 120, finished"
        browser.find_element(*_by('tr[data-child="0"] a.subflow')).click()
        error = wait_for(lambda: browser.find_element(*_by('tr[data-child="1"] [data-outcome]')).text,
                         "the subflow's children")
        assert error == "permanent: <b>pear</b> is out of stock"  # shown as text
        browser.find_element(*_by("#parent-flow")).click()
        if kind == "memory":
            screenshot(browser, "flow")

        shop.out_of_stock.clear()
        wait_for(lambda: browser.find_element(*_by("#retry-flow")), "the Retry button").click()
        notice = wait_for(lambda: browser.find_element(*_by("#notice")).text, "the retry notice")
        assert notice == "Sent 1 job(s) of the flow again."
        _drain_until(shop, lambda: "2" in shop.shipped, "order 2 to ship after the retry")
        browser.refresh()
        assert wait_for(lambda: browser.find_element(*_by("#flow-status")).text == "succeeded" or browser.refresh(),
                        "the flow page to say succeeded")
        assert not browser.find_elements(*_by("#retry-flow"))
