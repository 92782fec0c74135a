"""Lambda shim per-record cost vs a bare json + pydantic loop, on one 1000-record SQS event.

Every row parses each record's body and validates the payload with the same pydantic
model; the shim also checks the envelope, runs a no-op job and builds the partial batch
response. Peers: Powertools' ``BatchProcessor`` with ``process_partial_response``, once
with a record handler doing ``json.loads`` + ``model_validate``, once with its pydantic
parser (an ``SqsRecordModel`` whose body is ``Json[...]`` of a typed envelope model).
Every record succeeds, so no SQS call is made (and no boto3 is imported). Runs alternate
between all rows, in one process, on the same event; medians.

Observability rows: the shim with ``cloudqueue.otel.OpenTelemetry`` on the API's global
providers with no SDK set, which hand out no-op tracers and meters (what an app pays with
the extra installed and nothing configured), and on the
SDK's recording providers (a span per record into an in-memory exporter, counters and
histograms into an in-memory reader), both on the same records each carrying a
``traceparent`` as a traced producer writes them; beside them Powertools' ``BatchProcessor`` with its
``Tracer`` (an X-Ray subsegment per record, sent over UDP to a daemon address nobody
listens on, as in a function without the daemon) and ``Metrics`` (one EMF metric per
record, flushed once per invocation), run with the Lambda environment variables they read.
And the shim with ``cloudqueue_aws.emf.EMF`` (outcomes, durations and queue latencies
added up per record, EMF lines written once per invocation) beside its peer, Powertools'
``BatchProcessor`` with ``Metrics`` alone.

    python -m bench.lambda_overhead [--records 1000] [--runs 41]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Json

from ._table import interleaved_medians, print_table

EVENT = Path(__file__).parent.parent / "tests" / "events" / "sqs_receipts_batch.json"


class Receipt(BaseModel):
    to: str
    order_id: str


class ReceiptEnvelope(BaseModel):
    """The envelope as a Powertools user would type it: what the job needs, and the payload."""

    specversion: str
    id: str
    source: str
    type: str
    time: str
    data: Receipt


class Context:
    """Lambda's context: a deadline far enough away."""

    def __init__(self) -> None:
        self._deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def build_event(records: int) -> dict[str, Any]:
    """``records`` realistic SQS records (from the recorded event), each a distinct job."""
    template = json.loads(EVENT.read_text())["Records"][0]
    out = []
    for n in range(records):
        record = copy.deepcopy(template)
        body = json.loads(record["body"])
        body["id"] = uuid.uuid4().hex
        body["data"] = {"to": f"user{n}@example.com", "order_id": str(10_000 + n)}
        record["body"] = json.dumps(body, separators=(",", ":"))
        record["messageId"] = str(uuid.uuid4())
        out.append(record)
    return {"Records": out}


def bare_loop(event: dict[str, Any]) -> float:
    start = time.perf_counter()
    validate = Receipt.model_validate
    loads = json.loads
    for record in event["Records"]:
        validate(loads(record["body"])["data"])
    return time.perf_counter() - start


def powertools_peers(event: dict[str, Any], context: Context) -> dict[str, Callable[[], float]]:
    """Powertools' BatchProcessor, with a plain record handler and with its record model."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

    class ReceiptRecord(SqsRecordModel):
        body: Json[ReceiptEnvelope]

    plain = BatchProcessor(event_type=EventType.SQS)
    modelled = BatchProcessor(event_type=EventType.SQS, model=ReceiptRecord)
    validate, loads = Receipt.model_validate, json.loads

    def plain_handler(record: Any) -> None:
        validate(loads(record.body)["data"])

    def modelled_handler(record: ReceiptRecord) -> None:
        pass  # the record model already parsed the body and validated the payload

    def timed(processor: Any, handler: Callable[[Any], None]) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            response = process_partial_response(event=event, record_handler=handler,
                                                processor=processor, context=context)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - start
            assert response == {"batchItemFailures": []}, response
            return elapsed
        return run

    return {POWERTOOLS_PLAIN: timed(plain, plain_handler),
            POWERTOOLS_MODEL: timed(modelled, modelled_handler)}


#: what the Lambda runtime sets and Powertools' Tracer and X-Ray read
LAMBDA_ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "receipts", "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "POWERTOOLS_SERVICE_NAME": "receipts", "POWERTOOLS_METRICS_NAMESPACE": "shop",
}


@contextlib.contextmanager
def lambda_environment() -> Iterator[None]:
    """The Lambda environment variables, set for the block and put back after it."""
    saved = {name: os.environ.get(name) for name in LAMBDA_ENVIRONMENT}
    os.environ.update(LAMBDA_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def traced(event: dict[str, Any]) -> dict[str, Any]:
    """The same records as a traced producer sends them: each body with its own traceparent."""
    from cloudqueue.envelope import with_traceparent

    out = copy.deepcopy(event)
    for record in out["Records"]:
        traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        record["body"] = with_traceparent(record["body"].encode(), traceparent).decode()
    return out


def powertools_observed(event: dict[str, Any], context: Context, *, traced: bool = True) -> Callable[[], float]:
    """Powertools' BatchProcessor with a Metrics count per record, and (``traced``) a
    Tracer subsegment per record."""
    from aws_lambda_powertools import Metrics, Tracer
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    with lambda_environment():  # outside a function the Tracer turns itself off
        tracer = Tracer(service="receipts", auto_patch=False)  # patching botocore reaches beyond this row
        metrics = Metrics(namespace="shop", service="receipts")
    processor = BatchProcessor(event_type=EventType.SQS)
    validate, loads = Receipt.model_validate, json.loads

    def count_record(record: Any) -> None:
        validate(loads(record.body)["data"])
        metrics.add_metric(name="completed", unit=MetricUnit.Count, value=1)

    def process(event: dict[str, Any], context: Any) -> Any:
        return process_partial_response(event=event, record_handler=record_handler,
                                        processor=processor, context=context)

    record_handler = tracer.capture_method(count_record) if traced else count_record
    handler = tracer.capture_lambda_handler(process) if traced else process

    def run() -> float:
        with lambda_environment(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # the final flush finds nothing when every 100th metric value flushed already
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            start = time.perf_counter()
            response = handler(event, context)
            metrics.flush_metrics()  # what @metrics.log_metrics does after the handler
            elapsed = time.perf_counter() - start
        assert response == {"batchItemFailures": []}, response
        return elapsed

    return run


def opentelemetry_rows(event: dict[str, Any], context: Context, job: Callable[..., Any],
                       ) -> dict[str, Callable[[], float]]:
    """The shim with the OpenTelemetry middleware on the API's no-op and the SDK's providers."""
    import cloudqueue_aws
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import cloudqueue as cq
    from cloudqueue.otel import OpenTelemetry

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    def timed(middleware: cq.Middleware, after: Callable[[], None]) -> Callable[[], float]:
        app = cq.App("shop", backend="memory://", middleware=[middleware])
        app.job(name="send_receipt")(job)
        handler = cloudqueue_aws.lambda_handler(app)

        def run() -> float:
            start = time.perf_counter()
            response = handler(event, context)
            elapsed = time.perf_counter() - start
            assert response == {"batchItemFailures": []}, response
            after()
            return elapsed
        return run

    def spans_recorded() -> None:
        assert len(exporter.get_finished_spans()) == len(event["Records"])
        exporter.clear()

    # no SDK set up: the API's global providers hand out proxies to its no-op ones, as in an
    # app that installed the extra and configured nothing (an SDK set later would take over)
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider", trace.get_tracer_provider()
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider", metrics.get_meter_provider()
    return {SHIM_OTEL_NOOP: timed(OpenTelemetry(), lambda: None),
            SHIM_OTEL_SDK: timed(OpenTelemetry(tracer_provider, meter_provider), spans_recorded)}


def emf_row(event: dict[str, Any], context: Context, job: Callable[..., Any]) -> dict[str, Callable[[], float]]:
    """The shim with ``cloudqueue_aws.emf.EMF``: counts and durations added up per record,
    the EMF lines written once per invocation (to a list here, to stdout in Lambda)."""
    import cloudqueue_aws
    from cloudqueue_aws.emf import EMF

    import cloudqueue as cq

    lines: list[str] = []
    app = cq.App("shop", backend="memory://", middleware=[EMF(namespace="shop", output=lines.append)])
    app.job(name="send_receipt")(job)
    handler = cloudqueue_aws.lambda_handler(app)

    def run() -> float:
        start = time.perf_counter()
        response = handler(event, context)
        elapsed = time.perf_counter() - start
        assert response == {"batchItemFailures": []}, response
        # one document per 100 durations and latencies: the counts of every record are in them
        assert json.loads(lines[0])["Completed"] == len(event["Records"]), lines[0]
        lines.clear()
        return elapsed
    return {SHIM_EMF: run}


FLOOR = "json.loads + model_validate"
CORE = "core dispatcher prepare + run"
SHIM = "cloudqueue_aws.lambda_handler"
SHIM_MIDDLEWARE = "lambda_handler + 1 no-op middleware"
SHIM_OTEL_NOOP = "lambda_handler + OpenTelemetry, API no-op"
SHIM_OTEL_SDK = "lambda_handler + OpenTelemetry, SDK recording"
SHIM_EMF = "lambda_handler + CloudWatch EMF"
POWERTOOLS_OBSERVED = "Powertools BatchProcessor + Tracer + Metrics"
POWERTOOLS_METRICS = "Powertools BatchProcessor + Metrics"
POWERTOOLS_PLAIN = "Powertools BatchProcessor + json/validate"
POWERTOOLS_MODEL = "Powertools BatchProcessor + SqsRecordModel"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=41)
    args = parser.parse_args(argv)
    already = {m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")}

    import cloudqueue_aws

    import cloudqueue as cq

    app = cq.App("shop", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt) -> None:
        pass

    handler = cloudqueue_aws.lambda_handler(app)

    class NoOp(cq.Middleware):
        """Wraps every run and sees every settle, doing nothing: the cost of the seam."""

        def run(self, task: cq.Task, call_next: Callable[[], Any]) -> Any:
            return call_next()

        def settled(self, result: cq.Result) -> None:
            pass

    wrapped = cq.App("shop", backend="memory://", middleware=[NoOp()])
    wrapped.job(name="send_receipt")(send_receipt.func)
    wrapped_handler = cloudqueue_aws.lambda_handler(wrapped)
    event = build_event(args.records)
    context = Context()

    def timing(run: Callable[[Any, Any], dict[str, Any]]) -> Callable[[], float]:
        def measure() -> float:
            start = time.perf_counter()
            response = run(event, context)
            elapsed = time.perf_counter() - start
            assert response == {"batchItemFailures": []}, response
            return elapsed
        return measure

    shim, shim_middleware = timing(handler), timing(wrapped_handler)

    from cloudqueue import Delivery
    from cloudqueue.dispatch import Task

    def core_only() -> float:
        """The core dispatcher alone (prepare + run per record), without the shim around it."""
        prepare, run = app.dispatcher.prepare, app.dispatcher.run
        start = time.perf_counter()
        for record in event["Records"]:
            prepared = prepare(Delivery(record["body"].encode(), 1, record["messageId"]))
            assert type(prepared) is Task
            run(prepared)
        return time.perf_counter() - start

    contenders: dict[str, Callable[[], float]] = {
        FLOOR: lambda: bare_loop(event), CORE: core_only, SHIM: shim, SHIM_MIDDLEWARE: shim_middleware}
    # boto3 is checked before the peers load: Powertools imports botocore pieces itself
    ours_imported = sorted(m for m in sys.modules
                           if m.split(".")[0] in ("boto3", "botocore") and m not in already)
    contenders.update(opentelemetry_rows(traced(event), context, send_receipt.func))
    contenders.update(emf_row(event, context, send_receipt.func))
    contenders.update(powertools_peers(event, context))
    contenders[POWERTOOLS_METRICS] = powertools_observed(event, context, traced=False)
    contenders[POWERTOOLS_OBSERVED] = powertools_observed(event, context)
    for _ in range(3):  # warm up every row
        for measure in contenders.values():
            measure()
    medians = interleaved_medians(args.runs, contenders)
    per_record = 1e6 / args.records
    rows = [(name, value * per_record) for name, value in medians]
    print_table(f"Lambda shim, {args.records}-record SQS event, median of {args.runs} runs",
                "us per record", rows, higher_is_better=False, against=FLOOR)
    found = dict(rows)
    for peer in (POWERTOOLS_PLAIN, POWERTOOLS_MODEL):
        print(f"  {SHIM} is {found[peer] / found[SHIM]:.2f}x as fast as {peer}")
    print(f"  {SHIM} over the bare loop: {found[SHIM] / found[FLOOR]:.2f}x (budget: 1.15x)")
    print(f"  with one no-op middleware (run and settled hooks): "
          f"{found[SHIM_MIDDLEWARE] / found[FLOOR]:.2f}x")
    for row in (SHIM_OTEL_NOOP, SHIM_OTEL_SDK, SHIM_EMF, POWERTOOLS_METRICS, POWERTOOLS_OBSERVED):
        print(f"  {row} over the bare loop: {found[row] / found[FLOOR]:.2f}x, "
              f"over the plain shim: {found[row] / found[SHIM]:.2f}x")
    print(f"  {SHIM_OTEL_SDK} is {found[POWERTOOLS_OBSERVED] / found[SHIM_OTEL_SDK]:.2f}x as fast as "
          f"{POWERTOOLS_OBSERVED}")
    print(f"  {SHIM_EMF} is {found[POWERTOOLS_METRICS] / found[SHIM_EMF]:.2f}x as fast as {POWERTOOLS_METRICS}")
    loaded = "none" if not ours_imported else ", ".join(ours_imported)
    note = " (boto3 was loaded before: this process cannot tell)" if already else ""
    print(f"  boto3/botocore imported by cloudqueue: {loaded}{note}")


if __name__ == "__main__":
    main()
