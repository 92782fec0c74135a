"""Shared output for the benchmarks: medians, a table, ratios against named peers."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence


def median_of(runs: int, measure: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``measure``."""
    return statistics.median(measure() for _ in range(runs))


def print_table(title: str, unit: str, rows: Sequence[tuple[str, float]], *,
                higher_is_better: bool, against: str) -> None:
    """Print one benchmark's table; each row's ratio is relative to the row named ``against``."""
    base = dict(rows)[against]
    print(f"\n{title}")
    width = max(len(name) for name, _ in rows)
    print(f"  {'':<{width}}  {unit:>14}  ratio vs {against}")
    for name, value in rows:
        ratio = value / base if base else float("nan")
        print(f"  {name:<{width}}  {value:>14,.2f}  {ratio:>6.2f}x")
    print(f"  ({'higher' if higher_is_better else 'lower'} is better)")


def interleaved_medians(runs: int, measures: Mapping[str, Callable[[], float]]) -> list[tuple[str, float]]:
    """Each measure's median of ``runs``, taking turns (one of each per round).

    Taking turns spreads drift on a busy machine (other processes, CPU frequency) over
    every row alike, where ``runs`` back-to-back calls per row would charge it to one.
    A garbage collection before each measurement keeps one row's garbage (the tracing
    rows make a lot) from being collected on another row's time.
    """
    import gc

    values: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(runs):
        for name, measure in measures.items():
            gc.collect()
            values[name].append(measure())
    return [(name, statistics.median(found)) for name, found in values.items()]
