"""Backends by URL: ``memory://`` is built in; adapters register through entry points.

An adapter's distribution declares, in its pyproject.toml::

    [project.entry-points."cloudqueue.backends"]
    sqs = "cloudqueue_aws.backend:from_url"

where ``from_url(url: str) -> Backend``. Nothing is imported until a URL asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from .base import Backend, Capabilities, DeadLetter, Delivery, OutgoingMessage, QueueStats

__all__ = ["Backend", "Capabilities", "DeadLetter", "Delivery", "OutgoingMessage", "QueueStats",
           "from_url", "registered_schemes"]

ENTRY_POINT_GROUP = "cloudqueue.backends"

_BUILTIN = {"memory": "cloudqueue.backends.memory:from_url"}
#: schemes provided by first-party adapters, with how to get them
_INSTALL_HINTS = {
    "sqs": 'pip install "cloudqueue[aws]"',
    "cloudtasks": 'pip install "cloudqueue[gcp]"',
    "pubsub": 'pip install "cloudqueue[gcp]"',
}


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def registered_schemes() -> list[str]:
    """Every scheme this installation can open."""
    return sorted({*_BUILTIN, *_entry_points()})


def _load(target: str) -> Callable[[str], Backend]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    factory: Callable[[str], Backend] = getattr(module, attr)
    return factory


def from_url(url: str) -> Backend:
    """Open the backend a URL names, e.g. ``memory://``, ``sqs://orders?region=eu-west-1``.

    Raises:
        ConfigurationError: no scheme, an unknown scheme (with a "did you mean" and the
            install hint for first-party adapters), or the adapter rejects the URL.
    """
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        raise ConfigurationError(
            f"backend URL {url!r} has no scheme; write e.g. 'memory://' or 'sqs://my-queue'")
    target = _BUILTIN.get(scheme)
    if target is None:
        found = _entry_points()
        target = found.get(scheme)
        if target is None:
            known = sorted({*_BUILTIN, *found})
            if scheme in _INSTALL_HINTS:
                raise ConfigurationError(
                    f"backend scheme {scheme!r} needs its adapter, which is not installed: "
                    f"{_INSTALL_HINTS[scheme]}")
            import difflib

            close = difflib.get_close_matches(scheme, [*known, *_INSTALL_HINTS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"unknown backend scheme {scheme!r} in {url!r}{hint} (installed: {', '.join(known)})")
    return _load(target)(url)
