"""cloudqueue on AWS: the SQS backend (``sqs://``), the Lambda shim and dead-letter tools.

    import cloudqueue_aws
    handler = cloudqueue_aws.lambda_handler(app)

Importing this package imports no boto3: the backend and the shim import it when they
first call SQS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lambda_shim import SQSEventError, lambda_handler

if TYPE_CHECKING:
    from ._errors import BatchSendError
    from .admin import QueuePair, ensure_queue
    from .backend import SQSBackend, from_url

__version__ = "0.1.0"

__all__ = ["BatchSendError", "QueuePair", "SQSBackend", "SQSEventError", "__version__",
           "ensure_queue", "from_url", "lambda_handler"]

_LAZY = {
    "BatchSendError": "._errors",
    "QueuePair": ".admin",
    "ensure_queue": ".admin",
    "SQSBackend": ".backend",
    "from_url": ".backend",
}


def __getattr__(name: str) -> Any:
    # the backend and admin modules load on first use, so a Lambda that only consumes
    # does not pay for them at cold start
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cloudqueue_aws' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
