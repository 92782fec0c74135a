"""``cloudqueue flows show MODULE:APP FLOW_ID [--json]``: where a flow stands."""

from __future__ import annotations

import json

import click

from ._errors import ConfigurationError
from .flows import get, render


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
