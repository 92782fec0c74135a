"""An app for the CLI tests, loaded as tests.unit.cli_app:app."""

from __future__ import annotations

import cloudqueue as cq

from .models import Receipt

app = cq.App("cli-test", backend="memory://cli-tests")
not_an_app = 42


@app.job
def send_receipt(payload: Receipt) -> None:
    if payload.to == "bounce":
        raise cq.Permanent("mailbox does not exist")
