"""An in-process payload store for tests and local work.

URL: ``memory://[name]``. A named store is shared inside the process (a producer app and
a consumer app may both open ``memory://payloads``); ``memory://`` is private to the app
that opened it. It keeps bytes, so what a cloud store would hand back is what comes back.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from .._errors import ConfigurationError
from . import PayloadStore

__all__ = ["MemoryPayloadStore", "from_url"]

_shared: dict[str, MemoryPayloadStore] = {}
_shared_lock = threading.Lock()


class MemoryPayloadStore(PayloadStore):
    """Bytes in a dict, behind a lock."""

    scheme = "memory"

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.url = f"memory://{name}" if name else f"memory://private-{id(self):x}"
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[key] = bytes(data)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._objects.get(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def object_keys(self) -> list[str]:
        """Every key held (for tests and inspection)."""
        with self._lock:
            return sorted(self._objects)


def from_url(url: str) -> MemoryPayloadStore:
    """Open ``memory://`` (private) or ``memory://NAME`` (shared in this process)."""
    parts = urlsplit(url)
    if parts.scheme != "memory":
        raise ConfigurationError(f"not a memory:// URL: {url!r}")
    if parts.query or parts.path.strip("/"):
        raise ConfigurationError(f"memory:// payload store URL {url!r} takes a name only, e.g. memory://payloads")
    name = parts.netloc
    if not name:
        return MemoryPayloadStore()
    with _shared_lock:
        store = _shared.get(name)
        if store is None:
            store = _shared[name] = MemoryPayloadStore(name)
        return store
