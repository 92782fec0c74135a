"""The README's example of the claim check with the idempotency store prints what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_claim_check_with_a_store_example_prints_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    section = README.read_text().split("**With the idempotency store.**", 1)[1].split("\n## ", 1)[0]
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_claim_store"})
    printed = capsys.readouterr().out

    def timeless(text: str) -> str:
        return re.sub(r"completed at [0-9T:+-]+", "completed at T", text)

    assert timeless(printed) == timeless(shown)
