"""Parametrize the conformance suite over every backend harness.

``harness_*.py`` modules beside this file each export ``HARNESSES``: a dict from a name
to a factory ``(request: pytest.FixtureRequest) -> ContextManager[Harness]``. A factory
whose component is missing calls ``tests.conftest.missing_component``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from .harness import Harness, memory_harness

Factory = Callable[[pytest.FixtureRequest], AbstractContextManager[Harness]]

HARNESSES: dict[str, Factory] = {
    "memory": lambda request: memory_harness(),
    "memory-fifo": lambda request: memory_harness(fifo=True),
}
for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if info.name.startswith("harness_"):
        module: Any = importlib.import_module(f"{__package__}.{info.name}")
        HARNESSES.update(module.HARNESSES)


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with HARNESSES[request.param](request) as built:
        yield built
