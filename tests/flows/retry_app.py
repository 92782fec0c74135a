"""The app ``cloudqueue flows retry`` loads in tests/flows/test_retry.py (its queue and store
from $CLOUDQUEUE_URL and $CLOUDQUEUE_STORE_URL)."""

from __future__ import annotations

import os

from tests.flows.test_retry import make_app

app, _, _ = make_app(backend=os.environ["CLOUDQUEUE_URL"], store=os.environ["CLOUDQUEUE_STORE_URL"])
