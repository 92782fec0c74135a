"""Reading a backend URL's query options, the same way for every backend.

Adapters call these from their ``from_url`` so every scheme refuses an unknown option
with a "did you mean", and explains a malformed value the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import parse_qsl

from .._errors import ConfigurationError


def parse_options(scheme: str, query: str, known: Iterable[str]) -> dict[str, str]:
    """The query options of a ``scheme://`` URL, refusing unknown ones with a "did you mean".

    Raises:
        ConfigurationError: an option not in ``known``.
    """
    names = tuple(known)
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (options: {', '.join(names)})"
            raise ConfigurationError(f"unknown {scheme}:// option {key!r}{hint}")
        options[key] = value
    return options


def parse_bool(scheme: str, name: str, text: str) -> bool:
    """``true/false`` (also 1/0, yes/no, on/off)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{scheme}:// option {name}={text!r} is not a boolean; use true or false")


def parse_number(scheme: str, name: str, text: str, *, unit: str = "") -> float:
    """A non-negative number (``unit`` names what it counts, for the error message)."""
    try:
        value = float(text)
    except ValueError:
        what = f"a number of {unit}" if unit else "a number"
        raise ConfigurationError(f"{scheme}:// option {name}={text!r} is not {what}") from None
    if value < 0:
        raise ConfigurationError(f"{scheme}:// option {name} must not be negative")
    return value


def parse_seconds(scheme: str, name: str, text: str) -> timedelta:
    """A non-negative number of seconds."""
    return timedelta(seconds=parse_number(scheme, name, text, unit="seconds"))
