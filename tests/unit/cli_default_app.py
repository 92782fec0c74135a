"""An app with no backend, as a new user writes it: ``cq.App("signup")``.

Loaded as tests.unit.cli_default_app:app with CLOUDQUEUE_URL unset, it is on a private
in-process memory queue.
"""

from __future__ import annotations

import cloudqueue as cq

from .models import Receipt

app = cq.App("signup")


@app.job
def send_receipt(payload: Receipt) -> None: ...
