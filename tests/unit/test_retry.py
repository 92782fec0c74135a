"""Retry counts the first try; backoff grows, caps and jitters within bounds."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

import cloudqueue as cq

S = timedelta(seconds=1)


def test_exponential_backoff_doubles_and_caps() -> None:
    retry = cq.Retry(attempts=6, backoff=cq.Backoff.exponential(initial=S, maximum=10 * S, jitter=False))
    assert retry.schedule() == [S, 2 * S, 4 * S, 8 * S, 10 * S]


def test_fixed_backoff_is_the_same_every_time() -> None:
    backoff = cq.Backoff.fixed(3 * S)
    assert [backoff.delay(n) for n in (1, 2, 9)] == [3 * S] * 3


def test_jitter_stays_between_half_and_the_full_step() -> None:
    backoff = cq.Backoff.exponential(initial=4 * S, factor=3, maximum=timedelta(hours=1))
    rng = random.Random(7)
    for attempt in range(1, 8):
        ceiling = backoff.ceiling(attempt)
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempt, rng) <= ceiling


def test_huge_attempt_numbers_do_not_overflow() -> None:
    backoff = cq.Backoff.exponential(initial=S, maximum=timedelta(minutes=5), jitter=False)
    assert backoff.delay(10_000) == timedelta(minutes=5)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: cq.Retry(attempts=0), "attempts must be an int >= 1"),
    (lambda: cq.Retry(attempts=2.5), "attempts must be an int"),  # type: ignore[arg-type]
    (lambda: cq.Retry(backoff=5), "cq.Backoff"),  # type: ignore[arg-type]
    (lambda: cq.Backoff.exponential(initial=5), "timedelta"),  # type: ignore[arg-type]
    (lambda: cq.Backoff.exponential(initial=-S), "negative"),
    (lambda: cq.Backoff.exponential(factor=0.5), "factor"),
    (lambda: cq.Backoff.exponential(initial=10 * S, maximum=S), "shorter than initial"),
])
def test_bad_retry_settings_fail_with_a_clear_configuration_error(build: object, message: str) -> None:
    with pytest.raises(cq.ConfigurationError, match=message):
        build()  # type: ignore[operator]


def test_retry_later_needs_a_timedelta() -> None:
    with pytest.raises(TypeError, match="timedelta"):
        cq.RetryLater(5)  # type: ignore[arg-type]
