"""The README's Schedules and Limits examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _code(section: str) -> str:
    text = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None
    return found.group(1)


def test_the_schedules_example_prints_the_slot_key_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_code("Schedules"), str(README), "exec"), {"__name__": "readme_schedules"})
    printed = capsys.readouterr().out
    assert printed == "daily cron:report:daily:2026-11-29T02:00:00Z\n"
    assert f"prints `{printed.strip()}`" in README.read_text()


def test_the_limits_example_declares_its_limits() -> None:
    namespace: dict[str, object] = {"__name__": "readme_limits"}
    exec(compile(_code("Limits"), str(README), "exec"), namespace)
    charge = namespace["charge"]
    assert charge.limits.rate.rate == "10/s" and charge.limits.concurrency.limit == 5  # type: ignore[attr-defined]
