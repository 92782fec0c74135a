"""The platform trace headers the shims pass on, read as OpenTelemetry span contexts."""

from __future__ import annotations

import pytest

from .conftest import needs_sdk


@pytest.mark.parametrize(("header", "expected"), [
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
     ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
     ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)),
    ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
     ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", True)),
    ("Self=1-67891234-12456789abcdef012345678;Root=1-5759e988-bd862e3fe1be46a994272793;"
     "Parent=53995c3f42cd8ad8;Sampled=?", ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8", False)),
    ("105445aa7843bc8bf206b12000100000/1;o=1", ("105445aa7843bc8bf206b12000100000", "0000000000000001", True)),
    ("105445aa7843bc8bf206b12000100000/18446744073709551615",
     ("105445aa7843bc8bf206b12000100000", "ffffffffffffffff", False)),
])
def test_w3c_xray_and_cloud_trace_headers_are_read(header: str, expected: tuple[str, str, bool]) -> None:
    needs_sdk()
    from cloudqueue.otel import _platform

    context = _platform(header)
    assert context is not None and context.is_remote
    assert (f"{context.trace_id:032x}", f"{context.span_id:016x}", context.trace_flags.sampled) == expected


@pytest.mark.parametrize("header", [
    "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",       # X-Ray without a parent segment
    "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
    "105445aa7843bc8bf206b12000100000/0;o=1",                  # span id 0 is invalid
    "105445aa7843bc8bf206b12000100000/18446744073709551616",   # over 64 bits
    "105445aa/1;o=1",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "not a trace header", ""])
def test_anything_else_is_ignored(header: str) -> None:
    needs_sdk()
    from cloudqueue.otel import _platform

    assert _platform(header) is None
