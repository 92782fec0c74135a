"""Pub/Sub backlog numbers from Cloud Monitoring (the Pub/Sub API itself counts nothing).

Reads the latest point of a subscription's ``num_undelivered_messages`` and
``oldest_unacked_message_age`` through the Monitoring API's ``timeSeries.list`` (REST,
v3). Google samples these every minute and shows them a few minutes late, so they say
how a queue is doing, not what is in it this second. Any failure (no credentials, no
permission ``monitoring.timeSeries.list``, an emulator without Monitoring) gives None:
health numbers never stop a worker.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

log = logging.getLogger("cloudqueue.gcp")

MONITORING_URL = "https://monitoring.googleapis.com"
UNDELIVERED = "pubsub.googleapis.com/subscription/num_undelivered_messages"
OLDEST_UNACKED = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"
#: how far back to look for the latest point (points come every minute, a few minutes late)
_WINDOW = timedelta(minutes=10)


class Monitoring:
    """``timeSeries.list`` for one project.

    Args:
        project: the project whose metrics are read.
        endpoint: HOST:PORT of a Monitoring server spoken to over plain HTTP without
            credentials (tests); None: Google's, with application default credentials.
        timeout: the longest one request may take.
    """

    def __init__(self, project: str, endpoint: str | None, timeout: timedelta) -> None:
        self.project = project
        self.base = f"http://{endpoint}" if endpoint else MONITORING_URL
        self.authenticated = endpoint is None
        self.timeout = timeout.total_seconds()
        self._session: Any = None
        self._lock = threading.Lock()
        self._warned = False

    def _get(self, params: dict[str, str]) -> Any:
        with self._lock:
            if self._session is None:
                if self.authenticated:
                    import google.auth
                    from google.auth.transport.requests import AuthorizedSession

                    credentials, _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/monitoring.read"])
                    self._session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
                else:
                    import requests

                    self._session = requests.Session()
        url = f"{self.base}/v3/projects/{self.project}/timeSeries"
        answer = self._session.get(url, params=params, timeout=self.timeout)
        answer.raise_for_status()
        return answer.json()

    def latest(self, metric: str, subscription: str) -> int | None:
        """The newest value of ``metric`` for ``subscription`` (its short name), or None."""
        end = datetime.now(timezone.utc)
        params = {
            "filter": f'metric.type = "{metric}" AND resource.type = "pubsub_subscription" '
                      f'AND resource.labels.subscription_id = "{subscription}"',
            "interval.startTime": (end - _WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "interval.endTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "view": "FULL",
        }
        try:
            found = self._get(params)
            newest: tuple[str, int] | None = None
            for series in found.get("timeSeries") or []:
                for point in series.get("points") or []:
                    when = str(point.get("interval", {}).get("endTime", ""))
                    value = point.get("value", {})
                    number = value.get("int64Value", value.get("doubleValue"))
                    if number is not None and (newest is None or when > newest[0]):
                        newest = (when, int(float(number)))
            return newest[1] if newest else None  # no point yet: unknown, not zero
        except Exception as exc:  # health numbers are best effort: never stop the caller
            if not self._warned:
                self._warned = True
                log.warning("could not read %s for subscription %s from %s (%s): backlog numbers "
                            "are unknown (grant monitoring.timeSeries.list, or pass monitoring=HOST:PORT)",
                            metric.rsplit("/", 1)[-1], subscription, self.base, exc)
            return None
