"""Kept for imports written before ``cloudqueue.clock`` was public."""

from .clock import SYSTEM_CLOCK, Clock, SystemClock, format_time, parse_time

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "format_time", "parse_time"]
