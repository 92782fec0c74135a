"""``cloudqueue flows show MODULE:APP FLOW_ID [--json]``: where a flow stands."""

from __future__ import annotations

import json

import click

from ._errors import ConfigurationError
from .flows import Flow, get


@click.group()
def flows() -> None:
    """Inspect flows (a parent job waiting for its children)."""


@flows.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the flow as one JSON object.")
def show(app_spec: str, flow_id: str, as_json: bool) -> None:
    """Show a flow: its status, its parent and each child's status and result or error."""
    from .cli import load_app  # errors become one line in the ``cloudqueue`` group around this

    app = load_app(app_spec)
    guard = app.idempotency
    if guard is not None and guard.url == "memory://":
        raise ConfigurationError(
            f"app {app.name!r} keeps its flows in a private in-process memory store, which this "
            "command cannot see; give the app a shared store (store='dynamodb://TABLE?region=...', "
            "'firestore://PROJECT/COLLECTION', or $CLOUDQUEUE_STORE_URL)")
    flow = get(app, flow_id)
    if as_json:
        click.echo(json.dumps(flow.to_dict(), sort_keys=True))
        return
    click.echo(render(flow))


def render(flow: Flow) -> str:
    """The flow as a few lines and a table of its children."""
    done = sum(c.status != "pending" for c in flow.children)
    lines = [f"flow {flow.id}: {flow.status} ({done}/{len(flow.children)} children finished, "
             f"policy {flow.policy!r})",
             f"parent:  {flow.parent_type} {flow.parent_job_id}",
             f"started: {flow.created_at}" + (f", finished {flow.finished_at}" if flow.finished_at else "")]
    if flow.reason:
        lines.append(f"reason:  {flow.reason}")
    rows = [("#", "job", "job id", "status", "result / error")]
    for c in flow.children:
        detail = (c.error or "") if c.status == "failed" else ("" if c.status == "pending" else json.dumps(c.result))
        if len(detail) > 80:
            detail = detail[:77] + "..."
        job = f"{c.job_type} (flow {c.flow})" if c.flow else c.job_type
        rows.append((str(c.index), job, c.job_id, c.status, detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines.append("")
    lines.extend("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
                 for row in rows)
    return "\n".join(line.rstrip() for line in lines)
