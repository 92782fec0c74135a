"""Opening what a URL names: built-in schemes, then those adapters register as entry points."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ConfigurationError


def entry_point_targets(group: str) -> dict[str, str]:
    """``scheme -> "module:factory"`` for every entry point of ``group``."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def factory_for(kind: str, scheme: str, url: str, builtin: Mapping[str, str],
                registered: Callable[[], Mapping[str, str]], install_hints: Mapping[str, str]) -> Any:
    """The factory that opens ``url`` (whose scheme is ``scheme``), or a ConfigurationError
    naming the adapter to install, the closest known scheme and the installed ones."""
    target = builtin.get(scheme)
    if target is None:
        found = registered()
        target = found.get(scheme)
        if target is None:
            if scheme in install_hints:
                raise ConfigurationError(f"{kind} scheme {scheme!r} needs its adapter, which is not "
                                         f"installed: {install_hints[scheme]}")
            import difflib

            known = sorted({*builtin, *found})
            close = difflib.get_close_matches(scheme, [*known, *install_hints], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(
                f"unknown {kind} scheme {scheme!r} in {url!r}{hint} (installed: {', '.join(known)})")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
