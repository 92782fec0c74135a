"""``cloudqueue flows list|show|retry MODULE:APP ...``: where the app's flows stand, and
sending a failed one's failed jobs again."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ._errors import ConfigurationError
from .flows import STATUSES, Flow, get, list_flows, render, retry, with_progress

if TYPE_CHECKING:
    from .app import App


@click.group()
def flows() -> None:
    """Inspect and retry flows (a parent job waiting for its children)."""


def _shared(app_spec: str) -> App:
    """The app, refused when its flows live in a store only its own process can see."""
    from .cli import load_app  # errors become one line in the ``cloudqueue`` group around this

    app = load_app(app_spec)
    guard = app.idempotency
    if guard is not None and guard.url == "memory://":
        raise ConfigurationError(
            f"app {app.name!r} keeps its flows in a private in-process memory store, which this "
            "command cannot see; give the app a shared store (store='dynamodb://TABLE?region=...', "
            "'firestore://PROJECT/COLLECTION', or $CLOUDQUEUE_STORE_URL)")
    return app


@flows.command(name="list")
@click.argument("app_spec", metavar="MODULE:APP")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only flows in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
def list_command(app_spec: str, status: str | None, limit: int, as_json: bool) -> None:
    """List the app's flows, newest first: status, children finished, policy, parent flow."""
    app = _shared(app_spec)
    found = list_flows(app, status=status, limit=limit)
    if as_json:
        for flow in found:
            click.echo(json.dumps(_row(flow), sort_keys=True))
        return
    if not found:
        click.echo(f"no flows{f' in status {status!r}' if status else ''} in the store of app {app.name!r}")
        return
    rows = [("flow", "status", "children", "policy", "parent", "part of", "started")]
    rows.extend((f.id, f.status, f"{f.finished}/{len(f.children)}", f.policy, f.parent_type, f.parent_flow or "-",
                 f.created_at) for f in found)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _row(flow: Flow) -> dict[str, object]:
    return {"id": flow.id, "status": flow.status, "policy": flow.policy, "children": len(flow.children),
            "finished": flow.finished, "parent_type": flow.parent_type, "parent_job_id": flow.parent_job_id,
            "parent_flow": flow.parent_flow, "created_at": flow.created_at, "finished_at": flow.finished_at,
            "reason": flow.reason}


@flows.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the flow as one JSON object.")
def show(app_spec: str, flow_id: str, as_json: bool) -> None:
    """Show a flow: its status, its parent and each child's status, chunk progress and result or error."""
    app = _shared(app_spec)
    flow = with_progress(app, get(app, flow_id))
    if as_json:
        click.echo(json.dumps(flow.to_dict(), sort_keys=True))
        return
    click.echo(render(flow))


@flows.command("retry")
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("flow_id")
def retry_command(app_spec: str, flow_id: str) -> None:
    """Send a failed flow's failed jobs again: their dead letters are redriven (a failed
    parent's too, or it is sent again from the flow's record). Fix the cause first."""
    out = retry(_shared(app_spec), flow_id)
    for job_id in out.redriven:
        click.echo(f"redriven: {job_id}")
    for job_id in out.resent:
        click.echo(f"sent again: {job_id}")
    for job_id in out.missing:
        click.echo(f"not in dead letters (purged or lapsed): {job_id}", err=True)
    click.echo(f"flow {flow_id}: {len(out.redriven) + len(out.resent)} job(s) sent again")
    if out.missing:
        raise SystemExit(1)
