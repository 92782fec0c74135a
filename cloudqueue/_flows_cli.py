"""``cloudqueue flows show|retry MODULE:APP FLOW_ID``: where a flow stands, and sending a
failed one's failed jobs again."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from ._errors import ConfigurationError
from .flows import get, render, retry

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


@flows.command()
@click.argument("app_spec", metavar="MODULE:APP")
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True, help="Print the flow as one JSON object.")
def show(app_spec: str, flow_id: str, as_json: bool) -> None:
    """Show a flow: its status, its parent and each child's status and result or error."""
    flow = get(_shared(app_spec), flow_id)
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
