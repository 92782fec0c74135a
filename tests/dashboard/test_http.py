"""The dashboard over HTTP (uvicorn on loopback, httpx as the client): safety and rendering."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import cloudqueue as cq
import cloudqueue.dashboard
from cloudqueue.backends.base import QueueStats
from cloudqueue.backends.memory import MemoryBackend
from tests.conftest import free_port, missing_component

from .conftest import csrf_token, served
from .shop import Shop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def shop() -> Shop:
    """A shop with one dead letter (a declined charge)."""
    made = Shop(MemoryBackend())
    made.declined.add("A-1")
    made.charge.enqueue({"order_id": "A-1", "amount": 10})
    made.app.drain()
    assert made.app.backend.stats().dead_lettered == 1
    return made


@pytest.fixture
def client(shop: Shop) -> Iterator[Any]:
    with served(cloudqueue.dashboard.app(shop.app)) as base, httpx.Client(base_url=base) as http:
        yield http


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client: Any, shop: Shop) -> None:
    answer = client.post("/queues/default/dead-letters/redrive", data={"all": "1"})
    assert answer.status_code == 403
    assert "no CSRF token" in answer.text
    client.get("/")  # the cookie alone is not enough either
    answer = client.post("/queues/default/dead-letters/redrive", data={"all": "1", "csrf": "forged.token"})
    assert answer.status_code == 403
    answer = client.post("/queues/default/dead-letters/purge", data={"confirm": "default"})
    assert answer.status_code == 403
    answer = client.post("/jobs/charge/enqueue", data={"order_id": "A-2", "amount": "3"})
    assert answer.status_code == 403
    stats = shop.app.backend.stats()
    assert (stats.waiting, stats.in_flight, stats.delayed, stats.dead_lettered) == (0, 0, 0, 1)


def test_a_csrf_token_only_works_with_the_cookie_it_was_issued_for(client: Any, shop: Shop) -> None:
    token = csrf_token(client.get("/queues/default/dead-letters").text)
    with httpx.Client(base_url=str(client.base_url)) as other:
        other.get("/")  # a cookie of its own
        answer = other.post("/queues/default/dead-letters/redrive", data={"all": "1", "csrf": token})
    assert answer.status_code == 403
    assert "does not match" in answer.text
    assert shop.app.backend.stats().dead_lettered == 1


def test_a_post_from_another_origin_is_refused_even_with_the_token(client: Any, shop: Shop) -> None:
    token = csrf_token(client.get("/queues/default/dead-letters").text)
    answer = client.post("/queues/default/dead-letters/redrive", data={"all": "1", "csrf": token},
                         headers={"origin": "https://evil.example"})
    assert answer.status_code == 403
    assert shop.app.backend.stats().dead_lettered == 1
    answer = client.post("/queues/default/dead-letters/redrive", data={"all": "1", "csrf": token})
    assert answer.status_code == 303
    assert shop.app.backend.stats().dead_lettered == 0


def test_purge_asks_for_the_queue_name_first(client: Any, shop: Shop) -> None:
    page = client.get("/queues/default/dead-letters/purge")
    assert "This deletes 1 dead letter(s)" in page.text
    token = csrf_token(page.text)
    answer = client.post("/queues/default/dead-letters/purge", data={"csrf": token})
    assert answer.status_code == 400
    assert shop.app.backend.stats().dead_lettered == 1
    answer = client.post("/queues/default/dead-letters/purge", data={"csrf": token, "confirm": "default"})
    assert answer.status_code == 303
    assert client.get(answer.headers["location"]).text.count("Purged 1 dead letter(s).") == 1
    assert shop.app.backend.stats().dead_lettered == 0


def test_redrive_selected_puts_back_only_the_ticked_dead_letters(client: Any, shop: Shop) -> None:
    shop.declined.update({"A-2", "A-3"})
    shop.charge.enqueue({"order_id": "A-2", "amount": 2})
    shop.charge.enqueue({"order_id": "A-3", "amount": 3})
    shop.app.drain()
    listing = client.get("/queues/default/dead-letters").text
    ids = dict(re.findall(r'<tr data-letter="([^"]+)">.*?card declined for order (A-\d)', listing, re.S))
    assert sorted(ids.values()) == ["A-1", "A-2", "A-3"]
    ticked = [mid for mid, order in ids.items() if order != "A-2"]
    answer = client.post("/queues/default/dead-letters/redrive",
                         data={"csrf": csrf_token(listing), "ids": ticked})
    assert answer.status_code == 303
    assert "Redrove 2 message(s)" in client.get(answer.headers["location"]).text
    shop.app.drain()
    assert sorted(shop.runs) == ["charge A-1", "charge A-3"]
    [left] = shop.app.backend.dead_letters()
    assert b'"A-2"' in left.body
    nothing = client.post("/queues/default/dead-letters/redrive", data={"csrf": csrf_token(listing)})
    assert nothing.status_code == 400


def test_redrive_of_an_id_that_is_gone_says_so(client: Any, shop: Shop) -> None:
    token = csrf_token(client.get("/queues/default/dead-letters").text)
    answer = client.post("/queues/default/dead-letters/redrive", data={"csrf": token, "ids": "m-gone"})
    assert answer.status_code == 404
    assert "no dead letter with id m-gone" in answer.text


def test_read_only_mode_shows_no_forms_and_refuses_every_post(shop: Shop) -> None:
    with served(cloudqueue.dashboard.app(shop.app, read_only=True)) as base, httpx.Client(base_url=base) as http:
        pages = [http.get(path).text for path in ("/", "/jobs/charge", "/queues/default/dead-letters")]
        letter = re.search(r'href="(/queues/default/dead-letters/m[^"]+)"', pages[2])
        assert letter is not None
        pages.append(http.get(letter.group(1)).text)
        for html in pages:
            assert "<form" not in html and "read-only" in html
        token = "x"
        for path in ("/queues/default/dead-letters/redrive", "/queues/default/dead-letters/purge",
                     "/jobs/charge/enqueue"):
            answer = http.post(path, data={"csrf": token, "all": "1", "confirm": "default"})
            assert answer.status_code == 403, path
            assert "read-only" in answer.text
        assert http.get("/queues/default/dead-letters/purge").status_code == 403
    assert shop.app.backend.stats().dead_lettered == 1


def test_payloads_and_reasons_are_never_rendered_unescaped() -> None:
    shop = Shop(MemoryBackend())
    evil = '<script>alert("x")</script>'
    shop.declined.add(evil)
    shop.charge.enqueue({"order_id": evil, "amount": 1})
    shop.app.drain()
    with served(cloudqueue.dashboard.app(shop.app)) as base, httpx.Client(base_url=base) as http:
        listing = http.get("/queues/default/dead-letters")
        letter = re.search(r'href="(/queues/default/dead-letters/m[^"]+)"', listing.text)
        assert letter is not None
        detail = http.get(letter.group(1))
        for page in (listing, detail):
            assert "<script>alert" not in page.text
            assert "&lt;script&gt;alert(" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_poison_dead_letter_shows_why_and_its_body_as_it_came(client: Any, shop: Shop) -> None:
    from cloudqueue.backends.base import OutgoingMessage

    shop.app.backend.send([OutgoingMessage(body=b'{"not": "an envelope", "html": "<b>x</b>"}',
                                           job_id="raw-1", job_type="")])
    shop.app.drain()
    listing = client.get("/queues/default/dead-letters").text
    [poison] = [mid for mid, kind in re.findall(r'<tr data-letter="([^"]+)">.*?kind-(\w+)', listing, re.S)
                if kind == "poison"]
    page = client.get(f"/queues/default/dead-letters/{poison}")
    assert page.status_code == 200
    assert "Not a cloudqueue envelope" in page.text
    assert "&#34;not&#34;: &#34;an envelope&#34;" in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert client.get("/queues/default/dead-letters/m-none").status_code == 404


def test_figures_a_backend_cannot_tell_show_as_unknown_never_as_zero() -> None:
    class Uncounted(MemoryBackend):
        """A queue service that reports no counts (as Pub/Sub without Cloud Monitoring)."""

        def stats(self) -> QueueStats:
            return QueueStats(in_flight=0)

    app = cq.App("blind", backend=Uncounted())
    with served(cloudqueue.dashboard.app(app)) as base, httpx.Client(base_url=base) as http:
        health = http.get("/api/health").json()["queues"][0]
        figures = health["figures"]
        assert {"waiting", "in_flight", "delayed", "dead_lettered"} <= set(figures)
        assert figures.pop("in_flight") == 0 and set(figures.values()) == {None}
        html = http.get("/").text
        for figure in ("waiting", "delayed", "dead_lettered", "oldest"):
            cell = re.search(rf'data-figure="{figure}"[^>]*>([^<]*)<', html)
            assert cell is not None and cell.group(1) == "unknown", figure


def test_a_queue_that_cannot_be_read_shows_the_error_and_the_rest_of_the_page() -> None:
    class Down(MemoryBackend):
        def stats(self) -> QueueStats:
            raise cq.BackendUnavailable("sqs endpoint unreachable: connection refused")

    app = cq.App("down", backend=Down())
    with served(cloudqueue.dashboard.app(app)) as base, httpx.Client(base_url=base) as http:
        page = http.get("/")
        assert page.status_code == 200
        assert "BackendUnavailable: sqs endpoint unreachable" in page.text
        assert http.get("/api/health").json()["queues"][0]["error"].startswith("BackendUnavailable")


def test_the_enqueue_form_puts_pydantic_errors_on_their_fields(client: Any, shop: Shop) -> None:
    token = csrf_token(client.get("/jobs/charge").text)
    answer = client.post("/jobs/charge/enqueue", data={
        "csrf": token, "order_id": "", "amount": "lots", "lines": "[{", "delay": "-1"})
    assert answer.status_code == 422
    errors = {}
    for field, chunk in re.findall(r'data-field="(\w+)">((?:(?!data-field=).)*)', answer.text, re.S):
        shown = re.search(r'class="field-error"[^>]*>([^<]*)<', chunk)
        if shown:
            errors[field] = shown.group(1)
    assert set(errors) == {"order_id", "amount", "lines", "delay"}
    assert errors["order_id"] == "Field required"
    assert "valid number" in errors["amount"]
    assert errors["lines"].startswith("not valid JSON")
    assert errors["delay"] == "a number of seconds, 0 or more"
    assert shop.app.backend.stats().waiting == 0
    answer = client.post("/jobs/charge/enqueue", data={
        "csrf": token, "order_id": "A-7", "amount": "9.5", "currency": '"USD"', "express": "true",
        "delay": "60", "idempotency_key": "charge-A-7"})
    assert answer.status_code == 303
    job_id = answer.headers["location"].rsplit("=", 1)[1]
    assert shop.charge.enqueue({"order_id": "A-7", "amount": 1}, idempotency_key="charge-A-7") == job_id
    assert shop.app.backend.stats().delayed == 1


def test_token_auth_lets_in_a_bearer_a_token_link_or_the_login_form(shop: Shop) -> None:
    secret_token = "s3cret-token-123"
    with served(cloudqueue.dashboard.app(shop.app, token=secret_token)) as base:
        with httpx.Client(base_url=base) as http:
            assert http.get("/api/health").status_code == 401
            page = http.get("/", headers={"accept": "text/html"})
            assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
            assert http.get("/api/health", headers={"authorization": f"Bearer {secret_token}"}).status_code == 200
            assert http.get("/api/health", headers={"authorization": "Bearer wrong-token"}).status_code == 401
            assert http.post("/queues/default/dead-letters/redrive", data={"all": "1"}).status_code == 401
        with httpx.Client(base_url=base, follow_redirects=True) as http:
            page = http.get(f"/?token={secret_token}")
            assert page.status_code == 200 and str(page.url).endswith("/")  # the token left the address
            assert http.get("/api/health").status_code == 200
        with httpx.Client(base_url=base) as http:
            login = http.get("/login?next=/jobs")
            wrong = http.post("/login?next=/jobs", data={"csrf": csrf_token(login.text), "token": "nope-nope"})
            assert wrong.status_code == 401
            right = http.post("/login?next=/jobs", data={"csrf": csrf_token(login.text), "token": secret_token})
            assert right.status_code == 303 and right.headers["location"] == "/jobs"
            assert http.get("/jobs").status_code == 200
            away = http.post("/login?next=//evil.example/",
                             data={"csrf": csrf_token(login.text), "token": secret_token})
            assert away.headers["location"] == "/"


def test_basic_auth_challenges_then_lets_in_the_right_password(shop: Shop) -> None:
    with served(cloudqueue.dashboard.app(shop.app, basic_auth="ops:pa55word")) as base, \
            httpx.Client(base_url=base) as http:
        answer = http.get("/")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Basic ")
        assert http.get("/", auth=("ops", "wrong")).status_code == 401
        assert http.get("/", auth=("ops", "pa55word")).status_code == 200
        raw = base64.b64encode(b"ops:pa55word").decode()
        assert http.get("/api/health", headers={"authorization": f"Basic {raw}"}).status_code == 200


def test_bad_settings_are_refused_with_the_fix() -> None:
    app = cq.App("x", backend=MemoryBackend())
    with pytest.raises(cq.ConfigurationError, match="at least 8 characters"):
        cloudqueue.dashboard.app(app, token="short")
    with pytest.raises(cq.ConfigurationError, match="a token or basic auth, not both"):
        cloudqueue.dashboard.app(app, token="long-enough-token", basic_auth=("ops", "pw"))
    with pytest.raises(cq.ConfigurationError, match="USER:PASSWORD"):
        cloudqueue.dashboard.app(app, basic_auth="ops")
    with pytest.raises(cq.ConfigurationError, match=r"refresh=timedelta\(seconds=2\)"):
        cloudqueue.dashboard.app(app, refresh=timedelta(milliseconds=100))


def test_a_non_loopback_bind_without_auth_refuses_to_start() -> None:
    with pytest.raises(cq.ConfigurationError, match=r"refusing to serve the dashboard on 0\.0\.0\.0 without auth"):
        cloudqueue.dashboard.serve(cq.App("x", backend=MemoryBackend()), host="0.0.0.0", port=free_port())
    cloudqueue.dashboard.check_bind("127.0.0.1")
    cloudqueue.dashboard.check_bind("::1")
    cloudqueue.dashboard.check_bind("0.0.0.0", token="long-enough-token")
    env = {**os.environ, "CLOUDQUEUE_URL": "memory://dash-cli"}
    env.pop("CLOUDQUEUE_DASHBOARD_TOKEN", None)
    env.pop("CLOUDQUEUE_DASHBOARD_BASIC_AUTH", None)
    done = subprocess.run(
        [sys.executable, "-c", "from cloudqueue.cli import main; main()", "dashboard", "tests.dashboard.cli_app:app",
         "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: refusing to serve the dashboard on 0.0.0.0 without authentication")
    assert "--token" in done.stderr and "--basic-auth" in done.stderr
    readme = Path(ROOT, "README.md").read_text(encoding="utf-8").split("## Dashboard", 1)[1]
    assert done.stderr.strip() in readme  # the README shows the message as it is


def test_the_dashboard_command_serves_the_app_on_loopback() -> None:
    port = free_port()
    env = {**os.environ, "CLOUDQUEUE_URL": "memory://dash-cli", "CLOUDQUEUE_DASHBOARD_TOKEN": "cli-token-123"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from cloudqueue.cli import main; main()", "dashboard", "tests.dashboard.cli_app:app",
         "--port", str(port), "--read-only"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        answer = None
        while answer is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/jobs",
                                   headers={"authorization": "Bearer cli-token-123"}, timeout=5)
            except httpx.TransportError:
                assert process.poll() is None, "the dashboard command exited early"
                assert time.monotonic() < deadline, "the dashboard command did not answer within 60 s"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert "send_receipt" in answer.text and "read-only" in answer.text
        assert httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=5).status_code == 401
    finally:
        process.terminate()
        try:
            _, errors = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate(timeout=10)
    assert "cloudqueue dashboard for app 'cli' on http://127.0.0.1:" in errors


def test_the_wsgi_adapter_serves_the_dashboard_inside_a_flask_app(shop: Shop) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    try:
        from flask import Flask
        from werkzeug.middleware.dispatcher import DispatcherMiddleware
    except ImportError:
        missing_component("flask", 'pip install flask (it comes with adapters/gcp[test])')

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    web = Flask("shop")
    web.add_url_rule("/", "home", lambda: "shop home")
    web.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        web.wsgi_app, {"/ops/queues": cloudqueue.dashboard.wsgi_app(shop.app)})
    server = make_server("127.0.0.1", free_port(), web, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            assert http.get("/").text == "shop home"
            listing = http.get("/ops/queues/queues/default/dead-letters")
            assert listing.status_code == 200 and "card declined for order A-1" in listing.text
            assert 'action="/ops/queues/queues/default/dead-letters/redrive"' in listing.text
            answer = http.post("/ops/queues/queues/default/dead-letters/redrive",
                               data={"all": "1", "csrf": csrf_token(listing.text)})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/ops/queues/queues/default/dead-letters?redriven=1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert shop.app.backend.stats().waiting == 1


def test_mounted_under_a_prefix_every_link_and_form_keeps_the_prefix(shop: Shop) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    dashboard = cloudqueue.dashboard.app(shop.app, refresh=timedelta(seconds=1))
    host = Starlette(routes=[Mount("/ops/queues", app=dashboard)])
    with served(host) as base, httpx.Client(base_url=base) as http:
        page = http.get("/ops/queues/queues/default/dead-letters")
        assert page.status_code == 200
        links = re.findall(r'(?:href|action|src)="([^"]+)"', page.text)
        assert links and all(link.startswith("/ops/queues/") for link in links), links
        script = http.get("/ops/queues/static/dashboard.js")
        assert script.status_code == 200 and "cache-control" not in script.headers
        assert page.headers["cache-control"] == "no-store"
        answer = http.post("/ops/queues/queues/default/dead-letters/redrive",
                           data={"all": "1", "csrf": csrf_token(page.text)})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ops/queues/")
        assert "Path=/ops/queues;" in page.headers["set-cookie"]


def test_import_cloudqueue_and_its_cli_load_nothing_of_the_dashboard() -> None:
    code = ("import sys, cloudqueue, cloudqueue.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'jinja2', 'uvicorn', 'a2wsgi', 'python_multipart', 'multipart') "
            "or m.startswith('cloudqueue.dashboard')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
