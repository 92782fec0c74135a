"""OpenTelemetry's own SDK as the receiving end: an in-memory span exporter and metric reader."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.aws.conftest import make_queue, sqs  # noqa: F401 - the AWS fixtures, reused here
from tests.conftest import missing_component
from tests.gcp.conftest import (  # noqa: F401 - the Google fixtures, reused here
    cloudevent_function,
    emulator,
    http_function,
    project,
    pubsub,
)


@dataclass
class Telemetry:
    """A middleware wired to in-memory exporters, and what they received."""

    middleware: Any
    exporter: Any
    reader: Any
    meter_provider: Any = None

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> Any:
        [found] = [s for s in self.spans() if s.name == name]
        return found

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, data point)`` of every point of ``metric`` in one collection."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found += [(dict(p.attributes), p) for p in m.data.data_points]
        return found

    def counts(self, metric: str, by: str | tuple[str, ...] = "cloudqueue.job.type") -> dict[Any, int]:
        """A counter's values keyed by one attribute (or a tuple of them)."""
        keys = (by,) if isinstance(by, str) else by
        out: dict[Any, int] = {}
        for attrs, point in self.points(metric):
            key = attrs.get(keys[0]) if len(keys) == 1 else tuple(attrs.get(k) for k in keys)
            out[key] = out.get(key, 0) + point.value
        return out


def needs_sdk() -> None:
    """Skip loudly (fail in CI) when the OpenTelemetry API and SDK are not installed."""
    try:
        found = importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:  # not even the API
        found = False
    if not found:
        missing_component("the OpenTelemetry SDK", 'install the dev extra: pip install -e ".[dev,otel]"')


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """``cloudqueue.otel.OpenTelemetry`` with its own SDK providers (not the global ones)."""
    needs_sdk()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cloudqueue.otel import OpenTelemetry

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(OpenTelemetry(tracer_provider, meter_provider), exporter, reader, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()
