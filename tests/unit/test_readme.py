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
