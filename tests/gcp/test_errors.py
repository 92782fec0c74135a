"""Errors at the Google boundary: bounded waits, configuration before credentials, one error tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends import from_url
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(90)


class Order(BaseModel):
    order_id: str


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where google-auth finds no application default credentials."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "PUBSUB_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata server here
    monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{free_port()}")


def test_pubsub_enqueue_to_an_unreachable_endpoint_ends_in_backend_unavailable_naming_it() -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    app = cq.App("shop", backend=f"pubsub://proj-x/jobs?emulator={endpoint}&timeout=2")

    @app.job
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.BackendUnavailable, match=endpoint):
        charge.enqueue(Order(order_id="o-1"))
    with pytest.raises(cq.EnqueueError, match=endpoint):  # says which jobs may have been sent
        charge.enqueue_many([Order(order_id=str(n)) for n in range(5)])


def test_pubsub_ack_and_pull_against_an_unreachable_endpoint_end_in_backend_unavailable() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    backend = from_url(f"pubsub://proj-x/jobs?subscription=jobs-sub&emulator={endpoint}&timeout=2")
    with pytest.raises(cq.BackendUnavailable, match=endpoint):
        backend.receive(max_messages=1, wait=_s(1))
    with pytest.raises(cq.BackendUnavailable, match=endpoint):
        backend.release(cq.Delivery(body=b"{}", attempt=1, message_id="m", handle="ack-id"))


def test_a_batched_ack_that_cannot_be_sent_is_logged_and_the_wait_for_it_is_bounded(
        caplog: pytest.LogCaptureFixture) -> None:
    # acks go out in batches from one thread (as the streaming-pull client sends them); one
    # that cannot be sent means the message comes back: at-least-once, said in the log
    endpoint = f"127.0.0.1:{free_port()}"
    backend = from_url(f"pubsub://proj-x/jobs?subscription=jobs-sub&emulator={endpoint}&timeout=2")
    backend.ack(cq.Delivery(body=b"{}", attempt=1, message_id="m", handle="ack-id"))
    with caplog.at_level("WARNING", logger="cloudqueue.gcp"):
        backend.close()  # flushes, within the timeout
    assert f"could not acknowledge 1 message(s) on projects/proj-x/subscriptions/jobs-sub at {endpoint}" \
        in caplog.text


def _s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


def test_cloud_tasks_enqueue_to_an_unreachable_endpoint_ends_in_backend_unavailable_naming_it() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    app = cq.App("shop", backend=f"cloudtasks://proj-x/europe-west1/jobs?target=https://fn.example/"
                                 f"&endpoint={endpoint}&timeout=2")

    @app.job
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.BackendUnavailable, match=endpoint):
        charge.enqueue(Order(order_id="o-1"))


def test_a_timeout_that_is_not_positive_is_a_configuration_error() -> None:
    with pytest.raises(cq.ConfigurationError, match="timeout"):
        from_url("pubsub://proj-x/jobs?timeout=0")
    with pytest.raises(cq.ConfigurationError, match="timeout"):
        from_url("cloudtasks://proj-x/europe-west1/jobs?timeout=-1")


@pytest.mark.usefixtures("no_credentials")
def test_a_cloud_tasks_url_without_target_says_so_before_looking_for_credentials() -> None:
    app = cq.App("shop", backend="cloudtasks://proj-x/europe-west1/jobs")

    @app.job
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.ConfigurationError, match=r"no target URL.*\?target="):
        charge.enqueue(Order(order_id="o-1"))


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize("url", ["cloudtasks://proj-x/europe-west1/jobs?target=https://fn.example/",
                                 "pubsub://proj-x/jobs"])
def test_missing_credentials_are_a_configuration_error_with_the_fix(url: str) -> None:
    app = cq.App("shop", backend=url)

    @app.job
    def charge(payload: Order) -> None: ...

    with pytest.raises(cq.ConfigurationError, match="no Google credentials") as raised:
        charge.enqueue(Order(order_id="o-1"))
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(raised.value)
    assert "emulator" in str(raised.value)


@pytest.mark.timeout(20)  # the 30 s call timeout would run past this; a quarter window does not
def test_an_ack_deadline_extension_to_a_silent_endpoint_gives_up_within_a_quarter_window() -> None:
    # the heartbeat extends every held message from one thread: a call that hangs must end
    # well before the other messages' deadlines, not after the 30 s call timeout
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections and never answers a byte
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
    backend = from_url(f"pubsub://proj-x/jobs?subscription=jobs-sub&emulator={endpoint}")
    delivery = cq.Delivery(body=b"{}", attempt=1, message_id="m", handle="ack-id")
    try:
        with pytest.raises(cq.BackendUnavailable, match=endpoint):
            backend.extend_visibility(delivery, _s(10))
    finally:
        silent.close()
        for sock in accepted:
            sock.close()
