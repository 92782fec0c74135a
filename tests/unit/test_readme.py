"""The README's first job runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_first_job_in_the_readme_runs(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDQUEUE_URL", raising=False)
    section = README.read_text().split("## The first job", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "readme_first_job"}
    exec(compile(code.group(1), str(README), "exec"), namespace)
    assert capsys.readouterr().out == "mail a@b.c (attempt 1 of 5)\n"


def test_the_middleware_example_in_the_readme_prints_what_it_shows(
        capsys: pytest.CaptureFixture[str]) -> None:
    section = README.read_text().split("## Middleware and events", 1)[1]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    namespace: dict[str, object] = {"__name__": "readme_middleware"}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    # the same lines, the measured time aside
    assert re.sub(r"took \d+\.\d+s", "took Ts", printed) == re.sub(r"took \d+\.\d+s", "took Ts", shown)


def _blocks(section: str) -> list[str]:
    text = README.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:python|bash)?\n(.*?)```", text, re.S)


def test_the_per_item_options_example_runs_each_fifo_group_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _blocks("The first job")
    [code] = [b for b in blocks if "fulfil.message(" in b]
    shown = blocks[blocks.index(code) + 1]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_per_item"})
    printed = capsys.readouterr().out.splitlines()
    assert sorted(printed) == sorted(shown.splitlines())
    assert printed.index("o-1: pick") < printed.index("o-1: pack")
    assert printed[-1] == "3 succeeded"


def test_the_extra_forbid_example_prints_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _blocks("The first job")
    [code] = [b for b in blocks if 'extra="forbid"' in b]
    shown = blocks[blocks.index(code) + 1]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_extra_forbid"})
    assert capsys.readouterr().out == shown


def test_the_command_line_error_shown_is_what_the_command_prints() -> None:
    from click.testing import CliRunner

    from cloudqueue.cli import cli

    [example] = [b for b in _blocks("Command line") if b.startswith("$ cloudqueue worker")]
    command, shown = example.splitlines()
    args = [arg.strip('"') for arg in command.removeprefix("$ cloudqueue ").split()]
    result = CliRunner().invoke(cli, args, prog_name="cloudqueue")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [shown]
