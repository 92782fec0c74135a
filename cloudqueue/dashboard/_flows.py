"""The dashboard's flows pages: reading flows from the app's store, and retrying one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import CloudQueueError, ConfigurationError
from ..clock import parse_time
from ..flows import STATUSES, FlowNotFound, get, list_flows, retry, with_progress
from ._health import time_text

if TYPE_CHECKING:
    from ..app import App
    from ..flows import Flow, Retried

__all__ = ["LIST_LIMIT", "RETRYABLE", "STATUSES", "Listed", "flow_time", "read_flow", "read_flows", "result_text",
           "retry_flow"]

#: how many flows the list shows
LIST_LIMIT = 200
#: the statuses a flow can be retried from (``cloudqueue.flows.retry``)
RETRYABLE = ("failed", "parent_failed", "ready")
#: what an error page says: (HTTP status, title, message)
Problem = tuple[int, str, str]


@dataclass
class Listed:
    """The flows page: the flows, or why there are none to show."""

    flows: list[Flow]
    problem: str | None = None
    limit: int = LIST_LIMIT


def _no_store(app: App) -> str | None:
    if app.store is None:
        return (f"app {app.name!r} has no store, and flows keep their state in one: give it "
                "store='dynamodb://TABLE?region=...' or 'firestore://PROJECT/COLLECTION' (or $CLOUDQUEUE_STORE_URL)")
    return None


def read_flows(app: App, status: str | None) -> Listed:
    """The app's flows, newest first (at most ``LIST_LIMIT``), or the problem reading them."""
    why = _no_store(app)
    if why is not None:
        return Listed([], why)
    try:
        return Listed(list_flows(app, status=status, limit=LIST_LIMIT))
    except CloudQueueError as exc:
        return Listed([], f"{type(exc).__name__}: {exc}")


def read_flow(app: App, flow_id: str) -> Flow | Problem:
    """One flow with its children's chunk progress, or the error page to show."""
    why = _no_store(app)
    if why is not None:
        return 404, "No flows", why
    try:
        return with_progress(app, get(app, flow_id))
    except FlowNotFound as exc:
        return 404, "No such flow", str(exc)
    except CloudQueueError as exc:
        return 502, "Cannot read the flow", f"{type(exc).__name__}: {exc}"


def retry_flow(app: App, flow_id: str) -> Retried | Problem:
    """``cloudqueue.flows.retry``: what it sent again, or the error page."""
    try:
        done = retry(app, flow_id)
    except FlowNotFound as exc:
        return 404, "No such flow", str(exc)
    except ConfigurationError as exc:  # not failed: nothing to retry
        return 409, "Not retried", str(exc)
    except CloudQueueError as exc:
        return 502, "Not retried", f"{type(exc).__name__}: {exc}"
    return done


def flow_time(text: str | None) -> str:
    """A flow's RFC 3339 time as the other pages show times."""
    if not text:
        return "-"
    try:
        return time_text(parse_time(text))
    except ValueError:
        return text


def result_text(value: Any) -> str:
    """A child's result as compact JSON (escaped by the template, never rendered as HTML)."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "..."
