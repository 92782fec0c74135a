"""POST /orders: charge the payment inline, enqueue the follow-up jobs, answer at once."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from .jobs import OrderLine, OrderPlaced, generate_invoice, send_confirmation_email, update_analytics


class NewOrder(BaseModel):
    customer_email: str
    lines: list[OrderLine] = Field(min_length=1)


class PaymentDeclined(Exception):
    """The payment provider refused the charge."""


def charge_payment(email: str, amount: Decimal) -> str:
    """Stand-in for a payment provider call: the one step the customer waits for."""
    if amount > Decimal("10000"):
        raise PaymentDeclined(f"amount {amount} is over the card limit")
    return f"pay_{uuid.uuid4().hex[:12]}"


def place_order(request: NewOrder) -> dict[str, Any]:
    """Charge inline, then hand the slow work to background jobs."""
    order_id = uuid.uuid4().hex[:8]
    total = sum((line.unit_price * line.quantity for line in request.lines), Decimal(0))
    payment_id = charge_payment(request.customer_email, total)
    placed = OrderPlaced(order_id=order_id, customer_email=request.customer_email,
                         lines=request.lines, payment_id=payment_id)
    # Keys make a retried POST (same order) enqueue each job once.
    jobs = {job.name: job.enqueue(placed, idempotency_key=f"{job.name}:{order_id}")
            for job in (send_confirmation_email, generate_invoice, update_analytics)}
    return {"order_id": order_id, "payment_id": payment_id, "total": str(total), "jobs": jobs}


class OrdersHandler(BaseHTTPRequestHandler):
    """A minimal JSON endpoint; any web framework's handler would look the same."""

    def do_POST(self) -> None:
        if self.path != "/orders":
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = NewOrder.model_validate_json(self.rfile.read(length))
        except ValidationError as exc:
            self._reply(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": exc.errors(include_url=False)})
            return
        try:
            created = place_order(request)
        except PaymentDeclined as exc:
            self._reply(HTTPStatus.PAYMENT_REQUIRED, {"error": str(exc)})
            return
        self._reply(HTTPStatus.CREATED, created)

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the sample prints its own story


def make_server(port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 (port 0: any free port)."""
    return ThreadingHTTPServer(("127.0.0.1", port), OrdersHandler)
