"""cloudqueue: background jobs with typed payloads, on any cloud queue or in memory.

    import cloudqueue as cq

    app = cq.App("shop")

    @app.job(retry=cq.Retry(attempts=5))
    def send_receipt(payload: Receipt, ctx: cq.JobContext) -> None: ...

    send_receipt.enqueue(Receipt(to="a@b.c", order_id="1"))
"""

import typing as _typing

from ._errors import (
    BackendError,
    BackendUnavailable,
    CloudQueueError,
    ConfigurationError,
    Defer,
    EnqueueError,
    PayloadError,
    Permanent,
    PermissionDenied,
    QueueNotFound,
    RetryLater,
    Skip,
    StaleDelivery,
    Throttled,
    UnknownJobError,
    UnsupportedFeature,
)
from .app import App, DrainReport
from .backends.base import Backend, Capabilities, DeadLetter, Delivery, OutgoingMessage, QueueStats
from .context import JobContext
from .dispatch import Result, Task
from .job import Job
from .lifecycle import Middleware, Outcome, Reason, ReasonKind
from .retry import Backoff, Retry

if _typing.TYPE_CHECKING:
    from .limits import Concurrency, RateLimit
    from .schedules import Cron
    from .store import Once

#: names loaded on first use: an app without schedules, limits or a store never imports them
_LAZY = {"Concurrency": "cloudqueue.limits", "RateLimit": "cloudqueue.limits",
         "Cron": "cloudqueue.schedules", "Once": "cloudqueue.store"}

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "Capabilities",
    "CloudQueueError",
    "Concurrency",
    "ConfigurationError",
    "Cron",
    "DeadLetter",
    "Defer",
    "Delivery",
    "DrainReport",
    "EnqueueError",
    "Job",
    "JobContext",
    "Middleware",
    "Once",
    "Outcome",
    "OutgoingMessage",
    "PayloadError",
    "Permanent",
    "PermissionDenied",
    "QueueNotFound",
    "QueueStats",
    "RateLimit",
    "Reason",
    "ReasonKind",
    "Result",
    "Retry",
    "RetryLater",
    "Skip",
    "StaleDelivery",
    "Task",
    "Throttled",
    "UnknownJobError",
    "UnsupportedFeature",
    "__version__",
]


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudqueue' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
