"""Real servers for the dashboard tests: uvicorn on loopback, headless chromium, the backends."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, missing_component

CHROMIUM = os.environ.get("CLOUDQUEUE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CLOUDQUEUE_CHROMEDRIVER", "/usr/bin/chromedriver")
#: where screenshots go: DASHBOARD_SCREENSHOTS=docs/dashboard refreshes the README's
SCREENSHOTS = os.environ.get("DASHBOARD_SCREENSHOTS")


@contextlib.contextmanager
def served(asgi: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    try:
        import uvicorn
    except ImportError:
        missing_component("uvicorn (the dashboard extra)", 'pip install -e ".[dashboard]"')
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port} within 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _chromium(javascript: bool = True) -> Iterator[Any]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        missing_component(f"chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER})",
                          "bash scripts/test.sh installs them as root: apt-get install -y chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_component("selenium", 'pip install -e ".[dev]"')
    import tempfile

    profile = tempfile.mkdtemp(prefix="cq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1180,820", "--hide-scrollbars",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(10)  # a page after a click may still be loading: find waits for it (bounded)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium (Debian's package) driven through its chromedriver by Selenium."""
    yield from _chromium()


@pytest.fixture(scope="session")
def browser_without_javascript() -> Iterator[Any]:
    """The same browser with JavaScript turned off."""
    yield from _chromium(javascript=False)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as exc:  # a page mid-navigation: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def screenshot(driver: Any, name: str) -> None:
    """Save a PNG of the whole page (up to 1400 px tall) when DASHBOARD_SCREENSHOTS names a folder."""
    if not SCREENSHOTS:
        return
    import base64

    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth,"
        " Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + window.scrollY)]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 1400), "scale": 1}})
    (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


@dataclass
class Backing:
    """A backend for the dashboard tests, and what it can report."""

    name: str
    backend: Any
    #: whether stats() counts dead letters (Pub/Sub needs Cloud Monitoring for that)
    counts_dead: bool
    cleanup: Callable[[], None] = lambda: None


def _memory(request: pytest.FixtureRequest) -> Backing:
    from cloudqueue.backends.memory import MemoryBackend

    return Backing("memory", MemoryBackend(), counts_dead=True)


def _sqs(request: pytest.FixtureRequest) -> Backing:
    try:
        import boto3
        from cloudqueue_aws import SQSBackend, ensure_queue
    except ImportError:
        missing_component("cloudqueue-aws and boto3", 'pip install -e "adapters/aws[test]"')
    endpoint = request.getfixturevalue("moto_server")
    client: Any = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    pair = ensure_queue(f"dash-{uuid.uuid4().hex[:12]}", client=client, max_receive_count=5)

    def cleanup() -> None:
        for url in (pair.url, pair.dead_letter_url):
            with contextlib.suppress(Exception):
                client.delete_queue(QueueUrl=url)
        client.close()

    return Backing("sqs", SQSBackend(pair.url, client=client), counts_dead=True, cleanup=cleanup)


def _pubsub(request: pytest.FixtureRequest) -> Backing:
    try:
        import cloudqueue_gcp  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-gcp", 'pip install -e "adapters/gcp[test]"')
    from cloudqueue.backends import from_url
    from tests.gcp import components
    from tests.gcp.conftest import make_pubsub

    emulator = components.emulator(request.config)
    setup = make_pubsub(emulator.host, f"dash-{uuid.uuid4().hex[:10]}")
    backend = from_url(setup.url())
    return Backing("pubsub", backend, counts_dead=False, cleanup=backend.close)


BACKINGS = {"memory": _memory, "sqs": _sqs, "pubsub": _pubsub}


@pytest.fixture(params=sorted(BACKINGS))
def backing(request: pytest.FixtureRequest) -> Iterator[Backing]:
    made = BACKINGS[request.param](request)
    try:
        yield made
    finally:
        made.cleanup()


def csrf_token(html: str) -> str:
    """The CSRF token a page's form carries (every POST needs it)."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)
