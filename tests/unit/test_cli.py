"""The cloudqueue command line: readable tables, clear errors, non-zero exits on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudqueue.backends.memory import MemoryBackend
from cloudqueue.cli import cli
from tests.conftest import missing_component

from .cli_app import app

URL = "memory://cli-tests"
APP = "tests.unit.cli_app:app"
ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "cloudqueue"  # the installed console script


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
    """The command's stdout (stderr holds warnings, e.g. that a memory queue is in-process)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.stdout if ok else result.output


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
    (("stats", "justaname"), "neither a queue URL"),
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
    assert table[0].split() == ["queue", "waiting", "in", "flight", "delayed", "dead", "letters", "oldest",
                                "completed", "failed"]
    assert table[2].split()[:5] == ["cli-tests", "1", "0", "1", "0"]
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


# -- every usage error: one "error:" line on stderr, exit status 1 ----------------------

USAGE_ERRORS = [
    (("--bogus",), "No such option '--bogus'"),
    (("wrker",), "No such command 'wrker'. Did you mean 'worker'?"),
    (("enqueue",), "Missing argument 'TARGET'. (usage: cloudqueue enqueue [OPTIONS] TARGET JOB JSON"),
    (("enqueue", APP, "send_receipt", "{not json"), "payload is not JSON"),
    (("enqueue", APP, "send_receipt", "{}", "--delay", "soon"), "'soon' is not a valid float"),
    (("enqueue", APP, "send_receipt", '{"to": "a@b.c"}'), "field 'order_id': Field required"),
    (("enqueue", APP, "nope", "{}"), "no job 'nope'"),
    (("enqueue", URL, "send_receipt", "{}", "--ordering-key", "g"), "ordering_key needs a FIFO queue"),
    (("enqueue", "no_such_module_xyz:app", "x", "{}"), "cannot import module 'no_such_module_xyz'"),
    (("worker", APP, "--concurrency", "0"), "0 is not in the range x>=1"),
    (("worker", "sqs://orders?region=eu-west-1"), "is a queue URL, but this command needs"),
    (("terraform-vars", "sqs://orders", "aws-sqs-lambda"), "write MODULE:APP, e.g. myproject.jobs:app"),
    (("terraform-vars", APP, "azure"), "'azure' is not one of 'aws-sqs-lambda'"),
    (("stats", "justaname"), "neither a queue URL"),
    (("stats", "memry://x"), "did you mean 'memory'"),
    (("dead-letters", "list"), "Missing argument 'TARGET'"),
    (("dead-letters", "redrive", URL, "--nope"), "No such option '--nope'"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_every_usage_error_exits_1_with_one_error_line(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(cli, list(args), prog_name="cloudqueue")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert message in errors[0]
    assert result.stdout == ""


@pytest.fixture
def console_script() -> Path:
    if not CLI.exists():
        missing_component("the cloudqueue console script", f"install the package: pip install -e . (looked for {CLI})")
    return CLI


def test_a_usage_error_exits_1_with_one_line_in_a_real_process(console_script: Path) -> None:
    done = subprocess.run([str(console_script), "enqueue", APP, "send_receipt", "{not json"],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONWARNINGS": "error"})
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for JSON: payload is not JSON")
    assert done.stdout == ""


# -- a private memory queue: refused, since whatever it holds is gone at exit -------------

@pytest.fixture
def default_app_spec(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("CLOUDQUEUE_URL", raising=False)
    sys.modules.pop("tests.unit.cli_default_app", None)
    yield "tests.unit.cli_default_app:app"
    sys.modules.pop("tests.unit.cli_default_app", None)


@pytest.mark.parametrize("command", [
    ("enqueue", "{spec}", "send_receipt", '{"to": "a@b.c", "order_id": "1"}'),
    ("worker", "{spec}", "--until-empty"),
    ("stats", "{spec}"),
    ("dead-letters", "list", "{spec}"),
    ("dead-letters", "purge", "{spec}", "--yes"),
])
def test_a_command_on_the_default_private_memory_queue_is_refused(default_app_spec: str,
                                                                  command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [default_app_spec if part == "{spec}" else part for part in command])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: app 'signup' (tests.unit.cli_default_app:app) uses a private "
                           "in-process memory queue (CLOUDQUEUE_URL is unset")
    assert "gone when it exits" in line and "set CLOUDQUEUE_URL" in line
    assert result.stdout == ""


def test_a_private_memory_url_is_refused_and_a_named_one_warns(empty_queue: MemoryBackend) -> None:
    refused = CliRunner().invoke(cli, ["enqueue", "memory://", "send_receipt", "{}"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: memory:// is a private in-process memory queue")
    named = CliRunner().invoke(cli, ["stats", URL])
    assert named.exit_code == 0
    assert named.stderr.startswith("warning: memory://cli-tests lives inside this process only")


def test_the_default_queue_is_refused_in_a_real_process_too(console_script: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDQUEUE_URL"}
    done = subprocess.run([str(console_script), "enqueue", "tests.unit.cli_default_app:app",
                           "send_receipt", '{"to": "a@b.c", "order_id": "1"}'],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=60, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert "uses a private in-process memory queue" in done.stderr


@pytest.mark.parametrize("args", [(), ("dead-letters",)], ids=["cloudqueue", "dead-letters"])
def test_a_group_without_its_command_prints_its_help_and_exits_1(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, list(args), prog_name="cloudqueue")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Usage: {' '.join(('cloudqueue', *args))} [OPTIONS] COMMAND [ARGS]...")
    assert result.stdout == ""
