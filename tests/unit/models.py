"""Payload models shared by the unit tests (module level, so annotations resolve)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Receipt(BaseModel):
    to: str
    order_id: str
    amount: int = Field(default=1, ge=0)


class Stamped(BaseModel):
    at: datetime
