"""An app with flows for the dashboard tests: orders packed from lines (a subflow), a chunked
stock count, and a line whose item is out of stock until the warehouse restocks it."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import chunks
from cloudqueue.backends.base import Backend


class Line(BaseModel):
    sku: str


class Order(BaseModel):
    order_id: str


class Count(BaseModel):
    cursor: int = 0


class FlowShop:
    """An app on ``backend`` with a store; ``out_of_stock`` makes ``reserve`` fail for good."""

    def __init__(self, backend: Backend, store: str = "memory://", name: str = "flowshop") -> None:
        self.app = cq.App(name, backend=backend, store=store, retry=cq.Retry(attempts=1))
        self.out_of_stock: set[str] = set()
        self.shipped: list[str] = []
        app, out_of_stock, shipped = self.app, self.out_of_stock, self.shipped

        @app.job
        def reserve(payload: Line) -> dict[str, str]:
            if payload.sku in out_of_stock:
                raise cq.Permanent(f"<b>{payload.sku}</b> is out of stock")
            return {"reserved": payload.sku}

        @app.job
        def count_stock(payload: Count, ctx: cq.JobContext) -> int:
            more = Count(cursor=payload.cursor + 40) if payload.cursor < 80 else None
            chunks.advance(count_stock, ctx, more, progress=40)
            return payload.cursor + 40

        @app.job
        def pack(payload: Order) -> str:
            return f"box for {payload.order_id}"

        @app.job
        def ship(payload: Order) -> None:
            shipped.append(payload.order_id)

        self.reserve, self.count_stock, self.pack, self.ship = reserve, count_stock, pack, ship

    def order(self, order_id: str, *skus: str) -> str:
        """Start the flow of one order: its lines packed (a subflow) beside a stock count."""
        from cloudqueue.flows import Subflow

        return self.app.flow(self.ship.message(Order(order_id=order_id)), flow_id=f"order-{order_id}", children=[
            Subflow(self.pack.message(Order(order_id=order_id)),
                    children=[self.reserve.message(Line(sku=sku)) for sku in skus]),
            self.count_stock.message(Count())])
