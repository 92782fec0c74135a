"""The function source functions-framework serves in tests (its targets call tests.gcp.routing)."""

from __future__ import annotations

from typing import Any

from tests.gcp import routing


def http_entry(request: Any) -> Any:
    return routing.http(request)


def cloudevent_entry(event: Any) -> None:
    routing.cloudevent(event)
