"""A TCP proxy on 127.0.0.1 that injects endpoint faults between a client and a server.

Point a client at ``proxy.url`` instead of the server, then switch faults on and off
while it talks::

    with FaultProxy.for_url(moto_server) as proxy:
        client = boto3.client("sqs", endpoint_url=proxy.url, ...)
        proxy.cut_after_requests(5)        # the 6th request on is cut, unseen by the server
        ...                                # exercise the client
        proxy.pass_traffic()               # the endpoint is healthy again

Faults (each call replaces the fault before it; counts start at the call):

- ``pass_traffic()``: forward everything (the initial state).
- ``cut_after_requests(n, deliver_next=False)``: forward ``n`` more requests, then cut
  every later one: the proxy closes the connection without forwarding it, so the server
  never sees it and the client gets no answer. With ``deliver_next`` the first request
  past ``n`` does reach the server and is answered there, but the answer is dropped and
  the connection closed: the client cannot tell whether it took effect.
- ``cut_after_bytes(n)``: forward ``n`` more bytes from clients, then cut the connection
  that carries the next byte, and every later one that sends anything.
- ``drop_new_connections(close_open=False)``: accept and close every new connection at
  once; connections already open keep working, unless ``close_open`` closes them too
  (the endpoint is gone).
- ``delay(timedelta)``: hold every request (or, without HTTP framing, every chunk read
  from a client) for that long before forwarding it.

Requests are counted by reading HTTP/1.1 framing (headers, then a ``Content-Length``
body; chunked bodies are not supported), which is what boto3 and most REST clients
send. A proxy made with ``http=False`` forwards raw bytes (gRPC, any TCP protocol):
then ``cut_after_requests`` raises, and the other faults work on chunks as read.

Every socket and thread belongs to the proxy: ``stop()`` (or leaving the ``with``
block) closes them and joins the threads within a bound. Counters (``requests``,
``cut``, ``connections``) say what the proxy did, for assertions.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["FaultProxy"]

_READ = 65536
_JOIN = 5.0  # seconds stop() waits for each thread


class _Connection:
    """One client connection and its own connection to the server."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.muted = False  # drop what the server answers (deliver_next)
        self.answered = threading.Event()  # the server began to answer while muted
        self._closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            except OSError:
                pass
            sock.close()


class FaultProxy:
    """A loopback TCP proxy in front of ``upstream`` (host, port) that injects faults.

    Args:
        upstream: the server's (host, port).
        http: read HTTP/1.1 request framing (needed for ``cut_after_requests``).
        connect_timeout: the bound on connecting to the server.
    """

    def __init__(self, upstream: tuple[str, int], *, http: bool = True,
                 connect_timeout: timedelta = timedelta(seconds=5)) -> None:
        self.upstream = upstream
        self.http = http
        self._connect_timeout = connect_timeout.total_seconds()
        self._lock = threading.Lock()
        self._mode = "pass"
        self._limit = 0  # requests or bytes still to forward before the cut
        self._deliver_next = False
        self._delay = 0.0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[_Connection] = set()
        self._listener: socket.socket | None = None
        #: requests forwarded to the server in full (HTTP framing only)
        self.requests = 0
        #: requests (or connections, for byte cuts and drops) the proxy cut
        self.cut = 0
        #: connections accepted from clients
        self.connections = 0

    @classmethod
    def for_url(cls, url: str, *, http: bool = True,
                connect_timeout: timedelta = timedelta(seconds=5)) -> FaultProxy:
        """A proxy in front of the server at ``http://host:port``."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"FaultProxy needs a URL with a host and a port, got {url!r}")
        return cls((parts.hostname, parts.port), http=http, connect_timeout=connect_timeout)

    # -- life ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the proxy is not started; use it as a context manager or call start()")
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: give this to the client instead of the server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen on a free loopback port and start accepting connections."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)  # the accept loop notices stop() within this
        self._listener = listener
        self._spawn(self._accept_loop, "fault-proxy-accept")
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join every thread (bounded)."""
        self._stopping.set()
        deadline = time.monotonic() + _JOIN
        if self._threads:
            self._threads[0].join(_JOIN)  # the accept loop: no new connections after this
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            conn.close()
        for thread in self._threads[1:]:
            thread.join(max(deadline - time.monotonic(), 0.1))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"FaultProxy threads still running after {_JOIN} s: {alive}")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------
    def pass_traffic(self) -> None:
        """Forward everything, as a healthy endpoint would."""
        self._set("pass")

    def cut_after_requests(self, count: int, *, deliver_next: bool = False) -> None:
        """Forward ``count`` more requests, then cut every later one (see the module docstring)."""
        if not self.http:
            raise ValueError("cut_after_requests needs HTTP framing; this proxy was made with http=False")
        self._set("requests", limit=count, deliver_next=deliver_next)

    def cut_after_bytes(self, count: int) -> None:
        """Forward ``count`` more bytes from clients, then cut whatever sends more."""
        self._set("bytes", limit=count)

    def drop_new_connections(self, *, close_open: bool = False) -> None:
        """Close every new connection as soon as it is accepted (and, with ``close_open``,
        every connection open now)."""
        self._set("drop")
        if close_open:
            with self._lock:
                connections = list(self._open)
                self.cut += len(connections)
            for conn in connections:
                self._forget(conn)

    def delay(self, delay: timedelta) -> None:
        """Hold every request (or chunk) for ``delay`` before forwarding it."""
        self._set("delay", delay=delay.total_seconds())

    def _set(self, mode: str, *, limit: int = 0, deliver_next: bool = False, delay: float = 0.0) -> None:
        with self._lock:
            self._mode, self._limit, self._deliver_next, self._delay = mode, limit, deliver_next, delay

    # -- plumbing --------------------------------------------------------------------------
    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                drop = self._mode == "drop"
                if drop:
                    self.cut += 1
            if drop:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=self._connect_timeout)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            conn = _Connection(client, upstream)
            with self._lock:
                self._open.add(conn)
            number = self.connections
            self._spawn(self._requests if self.http else self._raw, f"fault-proxy-in-{number}", conn)
            self._spawn(self._answers, f"fault-proxy-out-{number}", conn)

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        with self._lock:
            self._open.discard(conn)

    def _answers(self, conn: _Connection) -> None:
        """Server to client, as is (or dropped, while muted)."""
        try:
            while True:
                data = conn.upstream.recv(_READ)
                if not data:
                    break
                if conn.muted:
                    conn.answered.set()
                    continue
                conn.client.sendall(data)
        except OSError:
            pass
        finally:
            self._forget(conn)

    def _raw(self, conn: _Connection) -> None:
        """Client to server without framing: bytes, drops and delays work on chunks."""
        try:
            while True:
                data = conn.client.recv(_READ)
                if not data:
                    break
                if not self._forward(conn, data, request=False):
                    break
        except OSError:
            pass
        finally:
            self._forget(conn)

    def _requests(self, conn: _Connection) -> None:
        """Client to server, one whole HTTP/1.1 request at a time."""
        buffer = b""
        try:
            while True:
                request, buffer = _read_request(conn.client, buffer)
                if request is None:
                    break
                if not self._forward(conn, request, request=True):
                    break
        except OSError:
            pass
        finally:
            self._forget(conn)

    def _forward(self, conn: _Connection, data: bytes, *, request: bool) -> bool:
        """Send ``data`` on under the current fault; False when the connection was cut."""
        with self._lock:
            mode, delay = self._mode, self._delay
            send, cut, deliver = data, False, False
            if mode == "requests" and request:
                if self._limit > 0:
                    self._limit -= 1
                elif self._deliver_next:
                    self._deliver_next, deliver, cut = False, True, True
                else:
                    send, cut = b"", True
            elif mode == "bytes":
                send = data[: self._limit]
                self._limit -= len(send)
                cut = len(send) < len(data)
            if cut:
                self.cut += 1
            if request and (not cut or deliver):
                self.requests += 1
        if delay:
            time.sleep(delay)
        if deliver:
            conn.muted = True
        if send:
            conn.upstream.sendall(send)
        if deliver:
            # the server took the request once it starts answering; then the answer is lost
            conn.answered.wait(timeout=10)
        if cut:
            self._forget(conn)
            return False
        return True


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    """One whole HTTP/1.1 request (head and Content-Length body) and what follows it.

    Returns (None, b"") when the client closed the connection between requests.
    """
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(_READ)
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
            raise ValueError("FaultProxy cannot count chunked HTTP requests; use http=False")
    while len(rest) < length:
        data = sock.recv(_READ)
        if not data:
            return None, b""
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]
