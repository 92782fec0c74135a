"""Order fulfillment as a flow: ship an order once its items are packed and it is paid.

    ship_order                      (the parent: runs once, after both children)
    ├── pack_order                  (a subflow's parent: runs once every item is reserved)
    │   ├── reserve_inventory  line 1
    │   └── reserve_inventory  line 2 ...
    └── charge_payment

The app reads its queue from $CLOUDQUEUE_URL and its store from $CLOUDQUEUE_STORE_URL
(memory when unset), so the same jobs run in memory here and on SQS + DynamoDB, or Pub/Sub
+ Firestore, when deployed.
"""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, Field

import cloudqueue as cq
from cloudqueue.flows import Subflow

app = cq.App("fulfillment", store=os.environ.get("CLOUDQUEUE_STORE_URL") or "memory://",
             retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(milliseconds=200))))

#: stock on hand (a real app keeps this in its database)
STOCK = {"BOOK-42": 5, "MUG-7": 1, "LAMP-3": 0}
_stock_lock = threading.Lock()
#: what the jobs did, in order (the sample prints it; a real app would not keep this)
journal: list[str] = []


class Line(BaseModel):
    order_id: str
    sku: str
    quantity: int = Field(gt=0)


class Payment(BaseModel):
    order_id: str
    amount: Decimal = Field(gt=0)


class Order(BaseModel):
    order_id: str
    address: str


@app.job
def reserve_inventory(line: Line) -> dict[str, int]:
    """Take the line's items from stock; an item out of stock fails the order at once."""
    with _stock_lock:
        left = STOCK.get(line.sku, 0)
        if left < line.quantity:
            journal.append(f"reserve_inventory  {line.order_id}  {line.sku} x{line.quantity}: out of stock")
            raise cq.Permanent(f"{line.sku} is out of stock ({left} left, {line.quantity} wanted)")
        STOCK[line.sku] = left - line.quantity
    journal.append(f"reserve_inventory  {line.order_id}  {line.sku} x{line.quantity}: reserved")
    return {line.sku: line.quantity}


@app.job
def pack_order(order: Order, ctx: cq.JobContext) -> dict[str, int]:
    """Pack what was reserved (the subflow's parent: its children are the reservations)."""
    assert ctx.flow is not None
    items = {sku: n for reserved in ctx.flow.results for sku, n in reserved.items()}
    journal.append(f"pack_order         {order.order_id}  packed {items}")
    return items


@app.job
def charge_payment(payment: Payment, ctx: cq.JobContext) -> str:
    """Charge the card; the payment provider times out on the first try."""
    if ctx.attempt == 1:
        journal.append(f"charge_payment     {payment.order_id}  attempt 1: provider timed out, will retry")
        raise TimeoutError("payment provider did not answer")
    journal.append(f"charge_payment     {payment.order_id}  attempt {ctx.attempt}: charged {payment.amount}")
    return f"pay-{payment.order_id}"


@app.job
def ship_order(order: Order, ctx: cq.JobContext) -> str:
    """Ship once packed and paid: the flow's parent reads both results."""
    assert ctx.flow is not None
    packed, payment = ctx.flow.results
    journal.append(f"ship_order         {order.order_id}  shipped {packed} to {order.address} (paid: {payment})")
    return f"track-{order.order_id}"


def fulfill(order: Order, lines: list[tuple[str, int]], amount: Decimal) -> str:
    """Start the order's flow; returns its id (the order id: starting it again is harmless)."""
    return app.flow(
        ship_order.message(order),
        children=[
            Subflow(pack_order.message(order),
                    children=[reserve_inventory.message(Line(order_id=order.order_id, sku=sku, quantity=n))
                              for sku, n in lines]),
            charge_payment.message(Payment(order_id=order.order_id, amount=amount)),
        ],
        flow_id=f"order-{order.order_id}")
