"""The README's flows example prints what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_flows_example_in_the_readme_ships_once_with_both_reservations(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDQUEUE_STORE_URL", raising=False)
    section = README.read_text().split("\n## Flows\n", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_flows"})
    assert capsys.readouterr().out == shown


def test_the_chunking_example_in_the_readme_works_through_three_chunks(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDQUEUE_STORE_URL", raising=False)
    section = README.read_text().split("\n### Chunking a large job\n", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_chunks"})
    out = capsys.readouterr().out
    pattern = re.escape(shown).replace("…", ".+?")
    assert re.fullmatch(pattern, out, re.S), out
