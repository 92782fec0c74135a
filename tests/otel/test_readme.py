"""The README's Observability section shows what the middleware really records."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.testing import FakeClock

from .conftest import Telemetry

README = Path(__file__).resolve().parents[2] / "README.md"
#: attribute -> the label it is shown with
SHOWN = {"messaging.message.id": "id", "messaging.batch.message_count": "messages",
         "cloudqueue.job.attempt": "attempt", "cloudqueue.outcome": "outcome",
         "cloudqueue.reason.kind": "reason", "error.type": "error"}


class Order(BaseModel):
    order_id: str


def render(spans: list[Any]) -> str:
    """One trace as a tree: each span's name, kind and the attributes worth reading."""
    by_parent: dict[int | None, list[Any]] = {}
    ids = {s.context.span_id for s in spans}
    for span in sorted(spans, key=lambda s: s.start_time):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    [root] = by_parent[None]
    queues = {s.attributes["messaging.destination.name"] for s in spans}
    lines = [f"trace {root.context.trace_id:032x}, queue {', '.join(sorted(queues))}"]

    def shown(span: Any, key: str) -> str:
        value = span.attributes[key]
        return f"{SHOWN[key]}={value[:8]}…" if key == "messaging.message.id" else f"{SHOWN[key]}={value}"

    def walk(span: Any, indent: str, last: bool) -> None:
        attrs = "  ".join(shown(span, key) for key in SHOWN if key in span.attributes)
        branch = "└─ " if last else "├─ "
        lines.append(f"{indent}{branch}{span.name:<{24 - len(indent)}} {span.kind.name:<9} {attrs}")
        children = by_parent.get(span.context.span_id, [])
        for n, child in enumerate(children):
            walk(child, indent + ("   " if last else "│  "), n == len(children) - 1)

    walk(root, "", True)
    return "\n".join(lines)


def test_the_readme_shows_the_spans_of_one_job_as_recorded(telemetry: Telemetry) -> None:
    clock = FakeClock()
    app = cq.App("shop", backend=MemoryBackend(name="orders", clock=clock), middleware=[telemetry.middleware])
    telemetry.middleware.watch(app)

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(seconds=10))))
    def ship(payload: Order, ctx: cq.JobContext) -> None:
        if ctx.attempt == 1:
            raise TimeoutError("carrier API timed out")
        notify.enqueue(Order(order_id=payload.order_id))

    @app.job
    def notify(payload: Order) -> None:
        pass

    ship.enqueue(Order(order_id="1001"), idempotency_key="ship-1001")
    app.drain(follow_delays=True)
    rendered = render(telemetry.spans())
    shown = README.read_text().split("## Observability", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```text\n(trace .*?)```", shown, re.S)
    assert block is not None, "the README's Observability section shows a trace"

    def ids_out(text: str) -> str:
        return re.sub(r"\b[0-9a-f]{32}\b|\b[0-9a-f]{8}…", "<id>", text).strip()

    assert ids_out(block.group(1)) == ids_out(rendered), rendered
