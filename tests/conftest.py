"""Shared test plumbing: how a test asks for a real component it needs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_component(what: str, fix: str) -> None:
    """A real component a test needs is missing: skip loudly here, fail in CI."""
    message = f"MISSING COMPONENT: {what}. {fix}"
    if IN_CI:
        pytest.fail(message + " (CI=true: a missing component is a failure)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto as a real HTTP server on a free loopback port; yields its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        missing_component("moto server", 'install it: pip install "moto[server]"')
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
