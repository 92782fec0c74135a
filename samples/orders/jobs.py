"""The order flow's background jobs.

The app reads its backend from $CLOUDQUEUE_URL (``memory://`` when unset), so the same
jobs run in memory here and on SQS, Cloud Tasks or Pub/Sub when deployed.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, Field

import cloudqueue as cq

app = cq.App("orders", retry=cq.Retry(
    attempts=5, backoff=cq.Backoff.exponential(initial=timedelta(milliseconds=200),
                                               maximum=timedelta(seconds=30))))

#: what the jobs did, in order (the sample prints it; a real app would not keep this)
journal: list[str] = []


class OrderLine(BaseModel):
    sku: str
    quantity: int = Field(gt=0)
    unit_price: Decimal = Field(gt=0)


class OrderPlaced(BaseModel):
    order_id: str
    customer_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    lines: list[OrderLine]
    payment_id: str

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))


class MailServerTimeout(Exception):
    """The mail server did not answer in time (a transient failure)."""


@app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(milliseconds=300))))
def send_confirmation_email(order: OrderPlaced, ctx: cq.JobContext) -> None:
    """Email the customer; the mail server times out on the first try."""
    if ctx.attempt == 1:
        journal.append(f"send_confirmation_email  {order.order_id}  attempt {ctx.attempt}: "
                       "mail server timed out, will retry")
        raise MailServerTimeout("smtp.example.com did not answer within 10 s")
    journal.append(f"send_confirmation_email  {order.order_id}  attempt {ctx.attempt}: "
                   f"sent to {order.customer_email}")


@app.job
def generate_invoice(order: OrderPlaced, ctx: cq.JobContext) -> None:
    """Render the invoice for the order."""
    journal.append(f"generate_invoice         {order.order_id}  attempt {ctx.attempt}: "
                   f"invoice INV-{order.order_id} for {order.total:.2f}")


@app.job
async def update_analytics(order: OrderPlaced, ctx: cq.JobContext) -> None:
    """Record the sale (an async job: it runs on the worker's event loop)."""
    units = sum(line.quantity for line in order.lines)
    journal.append(f"update_analytics         {order.order_id}  attempt {ctx.attempt}: "
                   f"{units} unit(s), revenue {order.total:.2f}")
