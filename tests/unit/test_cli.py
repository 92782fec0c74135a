"""The cloudqueue command line: readable tables, clear errors, non-zero exits on bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.cli import cli

from .cli_app import app

URL = "memory://cli-tests"
APP = "tests.unit.cli_app:app"


@pytest.fixture(autouse=True)
def empty_queue() -> Iterator[MemoryBackend]:
    backend = app.backend
    assert isinstance(backend, MemoryBackend)
    backend.purge()
    backend.purge_dead_letters()
    yield backend
    backend.purge()
    backend.purge_dead_letters()


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_enqueue_through_the_app_validates_and_prints_the_job_id(empty_queue: MemoryBackend) -> None:
    job_id = run("enqueue", APP, "send_receipt", '{"to": "a@b.c", "order_id": "1"}').strip()
    [pending] = empty_queue.pending()
    assert pending.job_id == job_id and len(job_id) == 32


def test_enqueue_with_a_bad_payload_names_job_and_field_and_exits_1(empty_queue: MemoryBackend) -> None:
    out = run("enqueue", APP, "send_receipt", '{"to": "a@b.c"}', ok=False)
    assert "job 'send_receipt'" in out and "field 'order_id'" in out
    assert empty_queue.pending() == []


@pytest.mark.parametrize(("args", "message"), [
    (("enqueue", APP, "send_receipt", "{not json"), "payload is not JSON"),
    (("enqueue", APP, "nope", "{}"), "no job 'nope'"),
    (("enqueue", "tests.unit.cli_app:not_an_app", "x", "{}"), "is int, not a cloudqueue App"),
    (("enqueue", "no_such_module_xyz:app", "x", "{}"), "cannot import module"),
    (("stats", "justaname"), "not module:app"),
    (("stats", "memry://x"), "did you mean 'memory'"),
])
def test_bad_input_exits_non_zero_with_a_clear_message(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_enqueue_by_url_sends_an_envelope_the_app_can_run(empty_queue: MemoryBackend) -> None:
    run("enqueue", URL, "send_receipt", '{"to": "x", "order_id": "9"}', "--key", "k9")
    report = app.drain()
    assert report.succeeded == 1


def test_stats_and_dead_letters_list_redrive_purge(empty_queue: MemoryBackend) -> None:
    run("enqueue", APP, "send_receipt", '{"to": "bounce", "order_id": "1"}')
    run("enqueue", APP, "send_receipt", '{"to": "ok", "order_id": "2"}', "--delay", "60")
    table = run("stats", URL).splitlines()
    assert table[0].split() == ["waiting", "in", "flight", "delayed", "dead", "letters", "oldest"]
    assert table[2].split()[:4] == ["1", "0", "1", "0"]
    app.drain()
    listing = run("dead-letters", "list", URL)
    assert "send_receipt" in listing and "permanent: mailbox does not exist" in listing
    [line] = run("dead-letters", "list", URL, "--json").splitlines()
    letter = json.loads(line)
    assert json.loads(letter["body"])["data"] == {"to": "bounce", "order_id": "1", "amount": 1}
    assert run("dead-letters", "redrive", APP, "--id", letter["message_id"]).strip() == "redrove 1 message(s)"
    assert run("dead-letters", "list", URL).strip() == "no dead letters"
    app.drain()
    assert run("dead-letters", "purge", URL, "--yes").strip() == "purged 1 message(s)"
    assert "Aborted" in run("dead-letters", "purge", URL, ok=False)


def test_worker_command_runs_until_empty(empty_queue: MemoryBackend) -> None:
    run("enqueue", APP, "send_receipt", '{"to": "ok", "order_id": "2"}')
    out = run("worker", APP, "--until-empty", "--concurrency", "2")
    assert out.splitlines()[-1].split()[:2] == ["1", "0"]
