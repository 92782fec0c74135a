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
    from .store import Once

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "Capabilities",
    "CloudQueueError",
    "ConfigurationError",
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
    # cq.Once loads the store module on first use: an app without a store never pays for it
    if name == "Once":
        from .store import Once

        globals()["Once"] = Once
        return Once
    raise AttributeError(f"module 'cloudqueue' has no attribute {name!r}")
