"""The README's idempotency store example prints what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_store_example_in_the_readme_runs_the_charge_once(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOUDQUEUE_STORE_URL", raising=False)
    section = README.read_text().split("## Idempotency store", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_store"})
    assert capsys.readouterr().out == shown
