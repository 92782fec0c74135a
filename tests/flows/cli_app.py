"""The app ``cloudqueue flows show`` reads in tests/flows/test_cli.py (store from $CLOUDQUEUE_STORE_URL)."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq

app = cq.App("clishop", backend="memory://clishop")


class Item(BaseModel):
    sku: str
    fail: bool = False


class Order(BaseModel):
    order_id: str


@app.job
def reserve(payload: Item) -> dict[str, str]:
    if payload.fail:
        raise cq.Permanent(f"{payload.sku} is out of stock")
    return {"reserved": payload.sku}


@app.job
def ship(payload: Order) -> None: ...
