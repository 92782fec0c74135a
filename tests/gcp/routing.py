"""Which handler the served test function calls: each test installs its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_http: list[Callable[[Any], Any]] = []
_cloudevent: list[Callable[[Any], None]] = []


def set_http(handler: Callable[[Any], Any]) -> None:
    _http[:] = [handler]


def set_cloudevent(handler: Callable[[Any], None]) -> None:
    _cloudevent[:] = [handler]


def http(request: Any) -> Any:
    if not _http:
        return "no handler installed", 503
    return _http[0](request)


def cloudevent(event: Any) -> None:
    if not _cloudevent:
        raise RuntimeError("no handler installed")
    _cloudevent[0](event)
