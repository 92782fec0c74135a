"""A Cloud Monitoring server on loopback: ``timeSeries.list`` (REST v3) for Pub/Sub metrics.

Google ships no Monitoring emulator. This serves the documented request and answer
(``GET /v3/projects/{project}/timeSeries`` with a ``filter`` on ``metric.type`` and
``resource.labels.subscription_id``, a required ``interval``, answered with ``timeSeries``
whose ``points`` come newest first as ``int64Value`` strings, or ``{}`` with no data), and
refuses a request without the interval or with a filter it cannot read, as the API does.
Tests record the points the service would have sampled with ``record``.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.conftest import free_port

_PATH = re.compile(r"^/v3/projects/([^/]+)/timeSeries$")
_FILTER = re.compile(r'^metric\.type = "([^"]+)" AND resource\.type = "pubsub_subscription" '
                     r'AND resource\.labels\.subscription_id = "([^"]+)"$')


class MonitoringServer:
    """``endpoint`` is HOST:PORT; ``requests`` counts the calls answered."""

    def __init__(self) -> None:
        self._points: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
        self._lock = threading.Lock()
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="monitoring", daemon=True)
        self._thread.start()

    def record(self, project: str, subscription: str, metric: str, value: int) -> None:
        """A point sampled now for ``metric`` of ``subscription``."""
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self._lock:
            self._points.setdefault((project, subscription, metric), []).append((when, value))

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        found = _PATH.match(parts.path)
        if found is None:
            return 404, {"error": {"code": 404, "message": f"no such method {parts.path}"}}
        if "interval.endTime" not in query:
            return 400, {"error": {"code": 400, "message": "Field interval.endTime had an invalid value"}}
        wanted = _FILTER.match(query.get("filter", [""])[0])
        if wanted is None:
            return 400, {"error": {"code": 400, "message": "Could not parse filter"}}
        project, (metric, subscription) = found.group(1), wanted.groups()
        with self._lock:
            self.requests += 1
            points = list(self._points.get((project, subscription, metric), []))
        if not points:
            return 200, {}
        kind = "INT64"
        return 200, {"timeSeries": [{
            "metric": {"type": metric},
            "resource": {"type": "pubsub_subscription",
                         "labels": {"project_id": project, "subscription_id": subscription}},
            "metricKind": "GAUGE", "valueType": kind,
            "points": [{"interval": {"startTime": when, "endTime": when}, "value": {"int64Value": str(value)}}
                       for when, value in reversed(points)]}]}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
