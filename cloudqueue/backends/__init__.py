"""Backends by URL: ``memory://`` is built in; adapters register through entry points.

An adapter's distribution declares, in its pyproject.toml::

    [project.entry-points."cloudqueue.backends"]
    sqs = "cloudqueue_aws.backend:from_url"

where ``from_url(url: str) -> Backend``. Nothing is imported until a URL asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from .._plugins import entry_point_targets, factory_for
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
    return entry_point_targets(ENTRY_POINT_GROUP)


def registered_schemes() -> list[str]:
    """Every scheme this installation can open."""
    return sorted({*_BUILTIN, *_entry_points()})


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
    factory: Callable[[str], Backend] = factory_for("backend", scheme, url, _BUILTIN, _entry_points,
                                                   _INSTALL_HINTS)
    return factory(url)
