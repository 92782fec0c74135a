"""What a new user trips over on SQS, pinned against moto server: a missing region, a
delay on a FIFO queue, what an idempotency key guarantees on each kind of queue, and
envelopes another producer sent."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.cli import cli
from tests.conftest import missing_component

from .conftest import FakeLambdaContext, land_event, load_event


class Receipt(BaseModel):
    to: str
    order_id: str


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    try:
        import boto3  # noqa: F401
    except ImportError:
        missing_component("boto3", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))


def test_an_sqs_url_with_no_region_anywhere_says_where_to_give_one(no_region: None) -> None:
    app = cq.App("signup", backend="sqs://orders")

    @app.job
    def welcome(payload: Receipt) -> None: ...

    with pytest.raises(cq.ConfigurationError) as info:
        welcome.enqueue(Receipt(to="a@b.c", order_id="1"))
    text = str(info.value)
    assert text.startswith("SQS needs a region and none is set: ")
    assert "sqs://orders?region=eu-west-1" in text and "AWS_DEFAULT_REGION" in text
    assert "You must specify a region" not in text


def test_the_cli_says_the_same_in_one_line_with_exit_1(no_region: None) -> None:
    result = CliRunner().invoke(cli, ["stats", "sqs://orders"])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: SQS needs a region and none is set: ") and "?region=" in line


def test_a_delay_on_a_fifo_queue_says_fifo_has_no_per_message_delay(moto_server: str, make_queue: Any) -> None:
    pair = make_queue(fifo=True)
    app = cq.App("signup", backend=f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}")

    @app.job(ordering_key="signup")
    def welcome(payload: Receipt) -> None: ...

    with pytest.raises(cq.UnsupportedFeature) as info:
        welcome.enqueue(Receipt(to="a@b.c", order_id="1"), delay=timedelta(minutes=10))
    text = str(info.value)
    assert "a FIFO sqs queue has no per-message delay" in text
    assert "a standard SQS queue delays up to 15 minutes and hops beyond" in text
    assert app.backend.stats().waiting == 0
    app.close()


def _runs_after_two_senders(url: str, *, fifo: bool, same_sender: bool) -> list[str]:
    """Enqueue one key twice (from one backend, or from two, as two processes would),
    then consume: the order ids that ran."""
    runs: list[str] = []
    consumer = cq.App("signup", backend=url)
    group = "signup" if fifo else None

    @consumer.job(ordering_key=group)
    def welcome(payload: Receipt) -> None:
        runs.append(payload.order_id)

    producer = consumer if same_sender else cq.App("signup", backend=url)
    if not same_sender:
        producer.job(ordering_key=group, name="welcome")(welcome.func)
    first = welcome.enqueue(Receipt(to="a", order_id="1"), idempotency_key="welcome-a")
    second = producer.get_job("welcome").enqueue(Receipt(to="a", order_id="2"),
                                                 idempotency_key="welcome-a")
    assert first == second  # the same key always gives the same job id
    consumer.worker(concurrency=1).run(until_empty=True)
    consumer.close()
    if producer is not consumer:
        producer.close()
    return sorted(runs)


@pytest.mark.parametrize(("fifo", "same_sender", "expected"), [
    (True, False, ["1"]),        # FIFO: SQS drops the repeat (5-minute deduplication)
    (False, True, ["1"]),        # standard: the sending process remembers the key
    (False, False, ["1", "2"]),  # standard, two senders: both are delivered, both run
], ids=["fifo-two-senders", "standard-one-sender", "standard-two-senders"])
def test_what_an_idempotency_key_guarantees_on_sqs(moto_server: str, make_queue: Any, fifo: bool,
                                                   same_sender: bool, expected: list[str]) -> None:
    pair = make_queue(fifo=fifo)
    url = f"sqs://{pair.name}?region=us-east-1&endpoint_url={moto_server}&wait=0"
    assert _runs_after_two_senders(url, fifo=fifo, same_sender=same_sender) == expected


def test_the_lambda_shim_runs_an_envelope_whatever_app_its_source_names(sqs: Any, make_queue: Any) -> None:
    from cloudqueue_aws import lambda_handler

    pair = make_queue()
    recorded = load_event("sqs_receipts_batch.json")
    records = recorded["Records"][:3]
    for record, source in zip(records, ["cloudqueue://shop", "cloudqueue://cli", "cloudqueue://billing"],
                              strict=True):
        body = json.loads(record["body"])
        body["source"] = source
        record["body"] = json.dumps(body)
    event = land_event(sqs, {"Records": records}, pair.url, pair.arn)
    ran: list[str] = []
    app = cq.App("shop", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt) -> None:
        ran.append(payload.order_id)

    response = lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000))
    assert response == {"batchItemFailures": []}
    assert sorted(ran) == ["2000", "2001", "2002"]
