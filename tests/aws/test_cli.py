"""The core CLI's dead-letter tools and stats on an sqs:// URL (moto)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.cli import cli

# The CLI logs to its output, and moto's in-process server logs every request: only the
# lines the command prints itself are compared.


class Order(BaseModel):
    order_id: str


def test_dead_letters_are_listed_with_reasons_redriven_and_purged(moto_server: str, make_queue: Any) -> None:
    pair = make_queue(prefix="orders")
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}"
    app = cq.App("shop", backend=url)

    @app.job
    def ship(payload: Order) -> None:
        raise cq.Permanent(f"order {payload.order_id} was cancelled")

    ship.enqueue_many([Order(order_id="1"), Order(order_id="2")])
    assert app.drain().dead_lettered == 2
    runner = CliRunner()

    listed = runner.invoke(cli, ["dead-letters", "list", "--json", url], catch_exceptions=False)
    letters = [json.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert sorted(letter["reason"] for letter in letters) == [
        "permanent: order 1 was cancelled", "permanent: order 2 was cancelled"]
    assert {letter["job_type"] for letter in letters} == {"ship"}
    assert all(letter["attempts"] == 1 for letter in letters)

    stats = runner.invoke(cli, ["stats", url], catch_exceptions=False)
    assert stats.exit_code == 0 and "dead letters" in stats.output

    first = letters[0]["message_id"]
    redriven = runner.invoke(cli, ["dead-letters", "redrive", "--id", first, url], catch_exceptions=False)
    assert "redrove 1 message(s)" in redriven.output.splitlines()
    assert app.backend.stats().waiting == 1

    purged = runner.invoke(cli, ["dead-letters", "purge", "--yes", url], catch_exceptions=False)
    assert "purged 1 message(s)" in purged.output.splitlines()
    empty = runner.invoke(cli, ["dead-letters", "list", url], catch_exceptions=False)
    assert "no dead letters" in empty.output.splitlines()
    app.close()


def test_enqueue_by_url_hops_a_delay_longer_than_sqs_allows(moto_server: str, make_queue: Any) -> None:
    import boto3

    pair = make_queue(prefix="later")
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}"
    boto3.setup_default_session()  # the CLI's client comes from it: watch what it sends
    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    for operation in ("SendMessage", "SendMessageBatch"):
        events.register(f"provide-client-params.sqs.{operation}", record)
    try:
        result = CliRunner().invoke(cli, ["enqueue", url, "ship", '{"order_id": "7"}', "--delay", "5000"],
                                    catch_exceptions=False)
    finally:
        for operation in ("SendMessage", "SendMessageBatch"):
            events.unregister(f"provide-client-params.sqs.{operation}", record)
    assert result.exit_code == 0, result.output
    [params] = sent
    entry = params["Entries"][0] if "Entries" in params else params
    assert entry["DelaySeconds"] == 900  # SQS's limit; the rest hops through the queue
    body = json.loads(entry["MessageBody"])
    assert body["type"] == "ship" and body["source"] == "cloudqueue://cli" and "cqnotbefore" in body
    assert body["id"] == result.stdout.strip()
