"""bench.limits_overhead runs all its rows at a tiny size (the numbers are measured by hand)."""

from __future__ import annotations

import pytest

from tests.bench.test_benchmarks_run import needs, table_rows


def test_limits_overhead_runs_every_row_at_a_tiny_size(capsys: pytest.CaptureFixture[str]) -> None:
    needs("dramatiq")
    from bench import limits_overhead

    limits_overhead.main(["--jobs", "8", "--runs", "1"])
    out = capsys.readouterr().out
    rows = table_rows(out, "job limits that never bind, 8 no-op jobs")
    assert set(rows) == {"cloudqueue worker(8)", "cloudqueue worker(8) + limits", "dramatiq StubBroker(8)",
                         "dramatiq StubBroker(8) + rate limiters"}, out
    assert "limits keep" in out
