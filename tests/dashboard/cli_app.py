"""An app for the ``cloudqueue dashboard`` command tests (its queue comes from CLOUDQUEUE_URL)."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq

app = cq.App("cli")


class Receipt(BaseModel):
    to: str


@app.job
def send_receipt(payload: Receipt) -> None:
    """Mail a receipt."""
