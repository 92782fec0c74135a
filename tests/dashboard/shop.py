"""The app the dashboard tests look at: an order flow whose charge fails once, for good."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field

import cloudqueue as cq
from cloudqueue.backends.base import Backend


class Currency(str, enum.Enum):
    EUR = "EUR"
    USD = "USD"


class Line(BaseModel):
    sku: str
    quantity: int = Field(default=1, ge=1)


class Charge(BaseModel):
    order_id: str = Field(min_length=3, description="the order to charge")
    amount: float = Field(gt=0)
    currency: Currency = Currency.EUR
    express: bool = False
    channel: Literal["web", "shop"] | None = None
    lines: list[Line] = []


class Receipt(BaseModel):
    to: str
    order_id: str


class Shop:
    """An app on ``backend`` and the runs its jobs made."""

    def __init__(self, backend: Backend, name: str = "shop") -> None:
        self.app = cq.App(name, backend=backend)
        self.runs: list[str] = []
        self.declined: set[str] = set()
        app, runs, declined = self.app, self.runs, self.declined

        @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=1))))
        def charge(payload: Charge, ctx: cq.JobContext) -> None:
            """Charge the order's card; a declined card is not retried."""
            if payload.order_id in declined:
                declined.discard(payload.order_id)  # the customer fixes the card, then ops redrive
                raise cq.Permanent(f"card declined for order {payload.order_id}")
            runs.append(f"charge {payload.order_id}")

        @app.job
        def send_receipt(payload: Receipt) -> None:
            runs.append(f"receipt {payload.order_id}")

        self.charge = charge
        self.send_receipt = send_receipt
