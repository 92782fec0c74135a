"""Time, injectable: every component reads the clock it was given."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    """Where cloudqueue reads the time and how it waits."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock just moves forward)."""


class SystemClock:
    """The real wall clock."""

    #: ``time.time`` itself: read once per record on hot paths, so no Python frame
    time = staticmethod(time.time)

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as CloudEvents writes it."""
    if moment.tzinfo is not timezone.utc:
        if moment.tzinfo is None:
            raise ValueError("cloudqueue only uses aware datetimes; got a naive one")
        moment = moment.astimezone(timezone.utc)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - twice as fast as isoformat
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
        moment.microsecond)


#: (whole second, its text up to the fraction): most timestamps share their second
_second: tuple[int, str] = (-1, "")


def format_timestamp(ts: float) -> str:
    """``format_time`` of a Unix timestamp (microseconds truncated), without a datetime."""
    global _second
    second = int(ts)
    if second < 0 or second > 253_402_300_799:  # before 1970 or after 9999: the general path
        return format_time(datetime.fromtimestamp(ts, timezone.utc))
    cached = _second
    if cached[0] != second:
        moment = datetime.fromtimestamp(second, timezone.utc)
        cached = _second = (second, "%04d-%02d-%02dT%02d:%02d:%02d." % (  # noqa: UP031
            moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second))
    return "%s%06dZ" % (cached[1], int((ts - second) * 1_000_000))  # noqa: UP031


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset) into an aware UTC datetime."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(timezone.utc)
