"""The dashboard in a real browser (headless chromium) against real backends.

Each backend: open the page, see the counts, open a dead letter, redrive it, see it run.
On the memory backend also: an invalid enqueue form shows the errors on its fields, a
valid one enqueues, and the live view updates the figures without reloading the page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import cloudqueue.dashboard

from .conftest import Backing, screenshot, served, wait_for
from .shop import Shop

pytestmark = pytest.mark.slow


def _by(css: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def _figure(driver: Any, name: str) -> str:
    text: str = driver.find_element(*_by(f'section.queue[data-queue="default"] [data-figure="{name}"]')).text
    return text


def _drain_until(shop: Shop, done: Any, what: str) -> None:
    """Run what is due until ``done()`` holds (a cloud queue may hand a message over late)."""
    wait_for(lambda: (shop.app.drain(), done())[1], what, timeout=60, every=0.5)


def test_see_the_counts_open_a_dead_letter_redrive_it_and_see_it_run(browser: Any, backing: Backing) -> None:
    shop = Shop(backing.backend)
    shop.declined.add("A-1001")
    shop.charge.enqueue({"order_id": "A-1001", "amount": 48.3, "lines": [{"sku": "mug", "quantity": 2}]})
    _drain_until(shop, lambda: not shop.declined, "the charge to run and be declined")
    dashboard = cloudqueue.dashboard.app(shop.app, refresh=timedelta(seconds=0.5))

    with served(dashboard) as base:
        browser.get(base + "/")
        if backing.counts_dead:
            wait_for(lambda: _figure(browser, "dead_lettered") == "1" or browser.refresh(),
                     "the overview to count one dead letter")
        else:  # Pub/Sub reports no counts without Cloud Monitoring: unknown, never 0
            assert _figure(browser, "dead_lettered") == "unknown"
            assert _figure(browser, "waiting") == "unknown"
        assert browser.find_element(*_by("#live")).is_displayed()

        browser.find_element(*_by('section.queue[data-queue="default"] .links a')).click()
        row = wait_for(lambda: browser.find_elements(*_by("tr[data-letter]")) or browser.refresh(),
                       "the dead letter to be listed", timeout=60)[0]
        assert "permanent" in row.text and "card declined for order A-1001" in row.text
        if backing.name == "memory":
            screenshot(browser, "dead-letters")
        row.find_element(*_by("a")).click()

        assert browser.find_element(*_by("#letter-kind")).text == "permanent"
        assert browser.find_element(*_by("#letter-job")).text == "charge"
        payload = browser.find_element(*_by("#payload")).text
        assert '"order_id": "A-1001"' in payload and '"sku": "mug"' in payload  # pretty-printed JSON
        if backing.name == "memory":
            screenshot(browser, "dead-letter")

        browser.find_element(*_by("#redrive-one")).click()
        assert "Redrove 1 message(s)" in wait_for(lambda: browser.find_element(*_by("#notice")).text,
                                                  "the redrive notice")
        _drain_until(shop, lambda: "charge A-1001" in shop.runs, "the redriven charge to run")
        assert shop.runs == ["charge A-1001"]

        wait_for(lambda: browser.find_elements(*_by("#no-letters")) or browser.refresh(),
                 "the dead letters page to be empty", timeout=60)
        browser.get(base + "/")
        if backing.counts_dead:
            wait_for(lambda: _figure(browser, "dead_lettered") == "0", "the live view to count no dead letters")


def test_an_invalid_enqueue_form_shows_each_error_on_its_field_then_a_valid_one_enqueues(browser: Any) -> None:
    from cloudqueue.backends.memory import MemoryBackend

    shop = Shop(MemoryBackend())
    with served(cloudqueue.dashboard.app(shop.app)) as base:
        browser.get(base + "/jobs/charge")
        browser.find_element(*_by("#field-order_id")).send_keys("A1")
        browser.find_element(*_by("#field-amount")).send_keys("-5")
        lines = browser.find_element(*_by("#field-lines"))
        assert lines.get_attribute("value") == "[]"  # the model's default
        lines.clear()
        lines.send_keys('[{"sku": "mug", "quantity": 0}]')
        browser.find_element(*_by("#enqueue-submit")).click()

        def error_of(field: str) -> str:
            text: str = browser.find_element(*_by(f'[data-field="{field}"] .field-error')).text
            return text

        wait_for(lambda: browser.find_elements(*_by(".field-error")), "the form's errors")
        assert "at least 3 characters" in error_of("order_id")
        assert "greater than 0" in error_of("amount")
        assert error_of("lines").startswith("0.quantity:")
        assert browser.find_element(*_by("#field-order_id")).get_attribute("value") == "A1"  # kept
        assert browser.find_elements(*_by('[data-field="currency"] .field-error')) == []
        screenshot(browser, "enqueue-errors")
        assert shop.app.backend.stats().waiting == 0

        order_id = browser.find_element(*_by("#field-order_id"))
        order_id.clear()
        order_id.send_keys("A-1002")
        amount = browser.find_element(*_by("#field-amount"))
        amount.clear()
        amount.send_keys("12.5")
        lines = browser.find_element(*_by("#field-lines"))
        lines.clear()
        lines.send_keys('[{"sku": "mug"}]')
        browser.find_element(*_by("#enqueue-submit")).click()
        notice = wait_for(lambda: browser.find_element(*_by("#notice")).text, "the enqueued notice")
        assert notice.startswith("Enqueued job ")
        assert shop.app.backend.stats().waiting == 1
        shop.app.drain()
        assert shop.runs == ["charge A-1002"]


def test_the_live_view_updates_the_figures_without_reloading_the_page(browser: Any) -> None:
    from cloudqueue.backends.memory import MemoryBackend

    shop = Shop(MemoryBackend())
    with served(cloudqueue.dashboard.app(shop.app, refresh=timedelta(seconds=0.5))) as base:
        browser.get(base + "/")
        assert _figure(browser, "waiting") == "0"
        browser.execute_script("window.cqMarker = 'same page'")
        for number in range(3):
            shop.send_receipt.enqueue({"to": "a@b.c", "order_id": f"A-{number}"})
        wait_for(lambda: _figure(browser, "waiting") == "3", "the live view to show 3 waiting")
        assert browser.execute_script("return window.cqMarker") == "same page"  # not reloaded
        rate = browser.find_element(*_by('[data-rate="waiting"]')).text
        assert rate.startswith("+") and rate.endswith("/min since opened")
        shop.declined.add("A-9")
        shop.charge.enqueue({"order_id": "A-9", "amount": 3})
        shop.charge.enqueue({"order_id": "A-10", "amount": 7})
        shop.app.drain()
        wait_for(lambda: _figure(browser, "waiting") == "0" and _figure(browser, "dead_lettered") == "1",
                 "the live view to show the queue drained, one dead letter")
        points = browser.find_element(*_by('polyline[data-line="waiting"]')).get_attribute("points")
        assert len(points.split()) >= 2  # the chart has a history
        assert browser.execute_script("return window.cqMarker") == "same page"
        screenshot(browser, "overview")


def test_with_javascript_off_every_page_works_but_the_live_view(browser_without_javascript: Any) -> None:
    from cloudqueue.backends.memory import MemoryBackend

    driver = browser_without_javascript
    shop = Shop(MemoryBackend())
    shop.declined.update({"A-1", "A-2"})
    shop.charge.enqueue({"order_id": "A-1", "amount": 1})
    shop.charge.enqueue({"order_id": "A-2", "amount": 2})
    shop.app.drain()
    with served(cloudqueue.dashboard.app(shop.app)) as base:
        driver.get(base + "/")
        assert _figure(driver, "dead_lettered") == "2"
        # the page's script un-hides the live badge first thing: hidden, so it did not run
        assert not driver.find_element(*_by("#live")).is_displayed()

        driver.get(base + "/queues/default/dead-letters")
        rows = driver.find_elements(*_by("tr[data-letter]"))
        [first] = [row for row in rows if "A-1" in row.text]
        first.find_element(*_by('input[name="ids"]')).click()
        driver.find_element(*_by("#redrive-selected")).click()
        assert "Redrove 1 message(s)" in driver.find_element(*_by("#notice")).text
        shop.app.drain()
        assert shop.runs == ["charge A-1"]

        driver.find_element(*_by("#purge")).click()
        driver.find_element(*_by("#confirm")).send_keys("default")
        driver.find_element(*_by("#purge-confirm")).click()
        assert "Purged 1 dead letter(s)." in driver.find_element(*_by("#notice")).text
        assert driver.find_elements(*_by("#no-letters"))

        driver.get(base + "/jobs/send_receipt")
        driver.find_element(*_by("#field-to")).send_keys("a@b.c")
        driver.find_element(*_by("#enqueue-submit")).click()
        assert driver.find_element(*_by('[data-field="order_id"] .field-error')).text == "Field required"
        assert driver.find_element(*_by("#field-to")).get_attribute("value") == "a@b.c"
        driver.find_element(*_by("#field-order_id")).send_keys("A-3")
        driver.find_element(*_by("#enqueue-submit")).click()
        assert driver.find_element(*_by("#notice")).text.startswith("Enqueued job ")
        shop.app.drain()
        assert shop.runs == ["charge A-1", "receipt A-3"]
