"""Push authentication: only a valid OIDC token of the invoker account runs anything."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import cloudqueue_gcp
import pytest
from pydantic import BaseModel

import cloudqueue as cq

from . import routing
from .conftest import SERVICE_ACCOUNT


class Order(BaseModel):
    order_id: str


AUDIENCE = "https://europe-west1-test-project.cloudfunctions.net/jobs"


@pytest.fixture
def served(http_function: Any, issuer: Any) -> tuple[cq.App, list[str], str]:
    app = cq.App("shop", backend="memory://")
    runs: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        runs.append(payload.order_id)

    routing.set_http(cloudqueue_gcp.http_handler(app, audience=AUDIENCE, service_account=SERVICE_ACCOUNT,
                                                 certs_url=issuer.certs_url))
    body = charge.message(Order(order_id="o-1")).body.decode()
    return app, runs, body


def _post(url: str, body: str, token: str | None) -> int:
    headers = {"Content-Type": "application/json", "X-CloudTasks-QueueName": "jobs",
               "X-CloudTasks-TaskName": "t-1", "X-CloudTasks-TaskRetryCount": "0",
               "X-CloudTasks-TaskExecutionCount": "0", "X-CloudTasks-TaskETA": "1700000000.0"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_valid_token_of_the_invoker_runs_the_job(served: Any, http_function: Any, issuer: Any) -> None:
    _, runs, body = served
    assert _post(http_function.url, body, issuer.token(AUDIENCE, SERVICE_ACCOUNT)) == 200
    assert runs == ["o-1"]


@pytest.mark.parametrize(("case", "status"), [
    ("missing", 401), ("not a jwt", 401), ("unsigned", 401), ("signed by another key", 401),
    ("expired", 401), ("wrong audience", 401), ("wrong issuer", 401), ("wrong email", 403),
    ("email not verified", 403), ("not valid for another hour", 401), ("nbf not a number", 401),
    ("unknown key id", 401),
])
def test_a_bad_token_is_refused_and_nothing_runs(served: Any, http_function: Any, issuer: Any,
                                                 case: str, status: int) -> None:
    _, runs, body = served
    tokens = {
        "missing": None,
        "not a jwt": "not-a-token",
        "unsigned": issuer.unsigned_token(AUDIENCE, SERVICE_ACCOUNT),
        "signed by another key": issuer.forged_token(AUDIENCE, SERVICE_ACCOUNT),
        "expired": issuer.token(AUDIENCE, SERVICE_ACCOUNT, lifetime=-120),
        "wrong audience": issuer.token("https://elsewhere.example/", SERVICE_ACCOUNT),
        "wrong issuer": issuer.token(AUDIENCE, SERVICE_ACCOUNT, issuer="https://evil.example"),
        "wrong email": issuer.token(AUDIENCE, "someone@other-project.iam.gserviceaccount.com"),
        "email not verified": issuer.token(AUDIENCE, SERVICE_ACCOUNT, email_verified=False),
        "not valid for another hour": issuer.token(AUDIENCE, SERVICE_ACCOUNT, nbf=int(time.time()) + 3600),
        "nbf not a number": issuer.token(AUDIENCE, SERVICE_ACCOUNT, nbf="soon"),
        "unknown key id": issuer.unknown_key_token(AUDIENCE, SERVICE_ACCOUNT),
    }
    assert _post(http_function.url, body, tokens[case]) == status
    assert runs == []


def test_certificates_are_fetched_once_not_per_request(served: Any, http_function: Any, issuer: Any) -> None:
    _, runs, body = served
    before = issuer.fetches
    for _ in range(3):
        assert _post(http_function.url, body, issuer.token(AUDIENCE, SERVICE_ACCOUNT)) == 200
    assert issuer.fetches - before <= 1
    assert len(runs) == 3


def test_turning_verification_off_is_explicit_and_logged_loudly(
        http_function: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = cq.App("shop", backend="memory://")
    runs: list[str] = []

    @app.job
    def charge(payload: Order) -> None:
        runs.append(payload.order_id)

    with caplog.at_level(logging.WARNING, logger="cloudqueue.gcp"):
        routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    assert "PUSH AUTHENTICATION IS OFF" in caplog.text
    assert _post(http_function.url, charge.message(Order(order_id="o-2")).body.decode(), None) == 200
    assert runs == ["o-2"]


def test_verification_without_an_audience_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDQUEUE_PUSH_AUDIENCE", raising=False)
    monkeypatch.delenv("CLOUDQUEUE_PUSH_SERVICE_ACCOUNT", raising=False)
    app = cq.App("shop", backend="memory://")
    with pytest.raises(cq.ConfigurationError, match="audience"):
        cloudqueue_gcp.http_handler(app)


def test_audience_and_account_come_from_the_backend_url() -> None:
    app = cq.App("shop", backend="cloudtasks://p/europe-west1/jobs?target=https://fn.example/"
                                 f"&service_account={SERVICE_ACCOUNT}")
    handler = cloudqueue_gcp.http_handler(app)
    assert callable(handler)
    app = cq.App("shop", backend=f"pubsub://p/jobs?push_audience={AUDIENCE}"
                                 f"&push_service_account={SERVICE_ACCOUNT}")
    assert callable(cloudqueue_gcp.http_handler(app))


def test_push_auth_checks_every_claim_directly(issuer: Any) -> None:
    auth = cloudqueue_gcp.PushAuth.of(AUDIENCE, SERVICE_ACCOUNT, certs_url=issuer.certs_url)
    claims = auth.verify(f"Bearer {issuer.token(AUDIENCE, SERVICE_ACCOUNT)}")
    assert claims["email"] == SERVICE_ACCOUNT
    with pytest.raises(cloudqueue_gcp.AuthError) as refused:
        auth.verify(f"Basic {issuer.token(AUDIENCE, SERVICE_ACCOUNT)}")
    assert refused.value.status == 401


def test_a_token_valid_from_now_runs(served: Any, http_function: Any, issuer: Any) -> None:
    _, runs, body = served
    assert _post(http_function.url, body, issuer.token(AUDIENCE, SERVICE_ACCOUNT, nbf=int(time.time()))) == 200
    assert runs == ["o-1"]


def test_forged_tokens_do_not_make_every_request_fetch_certificates(served: Any, http_function: Any,
                                                                    issuer: Any) -> None:
    _, runs, body = served
    assert _post(http_function.url, body, issuer.token(AUDIENCE, SERVICE_ACCOUNT)) == 200  # certs cached
    before = issuer.fetches
    unknown = [issuer.unknown_key_token(AUDIENCE, SERVICE_ACCOUNT) for _ in range(4)]
    forged = issuer.forged_token(AUDIENCE, SERVICE_ACCOUNT)  # a known key id, another key's signature
    statuses: list[int] = []
    lock = threading.Lock()

    def attack(token: str) -> None:
        for _ in range(5):
            status = _post(http_function.url, body, token)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=attack, args=(token,)) for token in [*unknown, forged]]
    for thread in threads:
        thread.start()
    valid = [_post(http_function.url, body, issuer.token(AUDIENCE, SERVICE_ACCOUNT)) for _ in range(5)]
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [401] * 25
    assert valid == [200] * 5
    assert issuer.fetches - before <= 1  # one refetch per interval at most, then the negative cache
    assert len(runs) == 6


def test_an_unknown_key_id_refetches_once_then_finds_a_rotated_key(issuer: Any) -> None:
    from datetime import timedelta

    auth = cloudqueue_gcp.PushAuth.of(AUDIENCE, SERVICE_ACCOUNT, certs_url=issuer.certs_url,
                                      min_refetch=timedelta(0))
    auth.verify(f"Bearer {issuer.token(AUDIENCE, SERVICE_ACCOUNT)}")
    before = issuer.fetches
    issuer.rotate()
    claims = auth.verify(f"Bearer {issuer.token(AUDIENCE, SERVICE_ACCOUNT)}")
    assert claims["email"] == SERVICE_ACCOUNT
    assert issuer.fetches - before == 1
