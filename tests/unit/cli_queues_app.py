"""An app with several queues for the CLI tests, loaded as tests.unit.cli_queues_app:app."""

from __future__ import annotations

import cloudqueue as cq

from .models import Receipt

app = cq.App("cli-queues", queues={"critical": "memory://cli-q-critical", "default": "memory://cli-q-default"})
ran: list[str] = []


@app.job(queue="critical")
def page(payload: Receipt) -> None:
    ran.append(f"page {payload.order_id}")
    if payload.to == "bounce":
        raise cq.Permanent("nobody on call")


@app.job
def send_receipt(payload: Receipt) -> None:
    ran.append(f"receipt {payload.order_id}")
