"""cloudqueue on Google Cloud: Cloud Tasks and Pub/Sub backends, function shims, OIDC checks.

    import cloudqueue as cq
    import cloudqueue_gcp

    app = cq.App("shop", backend="cloudtasks://my-project/europe-west1/jobs?target=...")
    handler = cloudqueue_gcp.http_handler(app)      # the Cloud Function's entry point

The backends open through their URL schemes (``cloudtasks://``, ``pubsub://``); importing
this package loads no Google SDK.
"""

from .handlers import PushRefused, cloudevent_handler, http_handler
from .oidc import AuthError, PushAuth

__all__ = ["AuthError", "PushAuth", "PushRefused", "cloudevent_handler", "http_handler"]
__version__ = "0.1.0"
