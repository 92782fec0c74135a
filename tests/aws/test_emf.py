"""CloudWatch EMF from the Lambda shim on a real (moto) SQS queue: the lines are valid
embedded metric format (the published JSON schema and the specification's limits), one
write per invocation, and the counts match what the shim did with each record."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from tests.aws.conftest import FakeLambdaContext
from tests.aws.esm import esm_deletes_successes, receive_event
from tests.conftest import missing_component

SCHEMA = Path(__file__).parent / "fixtures" / "emf_schema.json"


class Order(BaseModel):
    order_id: str


@pytest.fixture(scope="module")
def validator() -> Any:
    try:
        import jsonschema
    except ImportError:
        missing_component("jsonschema", 'install the AWS adapter\'s test extra: pip install -e "adapters/aws[test]"')
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def valid_emf(line: str, validator: Any) -> dict[str, Any]:
    """The document in ``line``, checked against the schema and the specification's rules
    the schema leaves out (targets on the root node, their types, the size limits)."""
    doc: dict[str, Any] = json.loads(line)
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        assert len(directive["Metrics"]) <= 100
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(doc[key], str) and doc[key], (key, doc.get(key))
        for metric in directive["Metrics"]:
            value = doc[metric["Name"]]
            if isinstance(value, list):
                assert 1 <= len(value) <= 100 and all(isinstance(v, (int, float)) for v in value)
            else:
                assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert len(line.encode()) < 256 * 1024
    return doc


def totals(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """(job type, outcome, metric) -> the sum of the counts, or the number of values."""
    out: Counter[tuple[str, str, str]] = Counter()
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                out[(doc["JobType"], doc["Outcome"], metric["Name"])] += (
                    len(value) if isinstance(value, list) else 1) if metric["Unit"] == "Milliseconds" else value
    return dict(out)


class Writes:
    """The middleware's output: each write's lines, kept apart."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def test_emf_lines_from_the_lambda_shim_are_valid_and_count_every_outcome(
        sqs: Any, make_queue: Any, validator: Any) -> None:
    from cloudqueue_aws import SQSBackend, lambda_handler
    from cloudqueue_aws.emf import EMF

    pair = make_queue(prefix="emf")
    out = Writes()
    emf = EMF(namespace="shop", dimensions={"Service": "orders"}, output=out)
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs), middleware=[emf])

    written_during_runs: list[int] = []

    @app.job(retry=cq.Retry(attempts=3, backoff=cq.Backoff.fixed(timedelta(0))))
    def charge(payload: Order, ctx: cq.JobContext) -> None:
        written_during_runs.append(len(out.lines))
        if payload.order_id == "flaky" and ctx.attempt == 1:
            raise TimeoutError("processor timed out")

    @app.job
    def cancel(payload: Order) -> None:
        written_during_runs.append(len(out.lines))
        raise cq.Permanent("already shipped")

    charge.enqueue_many([Order(order_id="1"), Order(order_id="2"), Order(order_id="flaky")])
    cancel.enqueue(Order(order_id="3"))
    sqs.send_message(QueueUrl=pair.url, MessageBody="not json")
    handler = lambda_handler(app, client=sqs)

    first = receive_event(sqs, pair.url, pair.arn, 5)
    response = handler(first, FakeLambdaContext(60_000))
    [flaky] = [r for r in first["Records"] if '"flaky"' in r["body"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky["messageId"]}]}
    assert written_during_runs == [0, 0, 0, 0]  # nothing written while the batch ran
    docs = [valid_emf(line, validator) for line in out.lines]
    # one write at the end of the invocation: one document per (job type, outcome), one timestamp
    assert sorted((d["JobType"], d["Outcome"]) for d in docs) == [
        ("cancel", "dead_letter"), ("charge", "ack"), ("charge", "retry"), ("unknown", "dead_letter")]
    assert len({d["_aws"]["Timestamp"] for d in docs}) == 1
    name = pair.url.rsplit("/", 1)[-1]
    for doc in docs:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "shop"
        assert directive["Dimensions"] == [["Queue", "JobType", "Outcome", "Service"]]
        assert doc["Queue"] == name and doc["Service"] == "orders"
    assert totals(docs) == {
        ("charge", "ack", "Completed"): 2, ("charge", "ack", "Duration"): 2, ("charge", "ack", "QueueLatency"): 2,
        ("charge", "retry", "Failed"): 1, ("charge", "retry", "Retried"): 1,
        ("charge", "retry", "Duration"): 1, ("charge", "retry", "QueueLatency"): 1,
        ("cancel", "dead_letter", "Failed"): 1, ("cancel", "dead_letter", "DeadLettered"): 1,
        ("cancel", "dead_letter", "Duration"): 1, ("cancel", "dead_letter", "QueueLatency"): 1,
        ("unknown", "dead_letter", "DeadLettered"): 1,  # poison: never ran, so no duration
    }
    dead = sqs.get_queue_attributes(QueueUrl=pair.dead_letter_url,
                                    AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert dead["ApproximateNumberOfMessages"] == "2"

    esm_deletes_successes(sqs, first, response, pair.url)
    out.lines.clear()
    second = receive_event(sqs, pair.url, pair.arn, 1)
    assert second["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert handler(second, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    docs = [valid_emf(line, validator) for line in out.lines]
    # the retry's success: completed and timed, but no queue latency (not its first run)
    assert totals(docs) == {("charge", "ack", "Completed"): 1, ("charge", "ack", "Duration"): 1}


def test_an_exhausted_job_counts_as_failed_and_dead_lettered(sqs: Any, make_queue: Any, validator: Any) -> None:
    from cloudqueue_aws import SQSBackend, lambda_handler
    from cloudqueue_aws.emf import EMF

    pair = make_queue(prefix="emf")
    out = Writes()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs), middleware=[EMF(output=out)])

    @app.job(retry=cq.Retry(attempts=1))
    def ship(payload: Order) -> None:
        raise ConnectionError("carrier down")

    ship.enqueue(Order(order_id="1"))
    event = receive_event(sqs, pair.url, pair.arn, 1)
    assert lambda_handler(app, client=sqs)(event, FakeLambdaContext(60_000)) == {"batchItemFailures": []}
    [doc] = [valid_emf(line, validator) for line in out.lines]
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "cloudqueue"
    assert totals([doc]) == {("ship", "dead_letter", "Failed"): 1, ("ship", "dead_letter", "DeadLettered"): 1,
                             ("ship", "dead_letter", "Duration"): 1, ("ship", "dead_letter", "QueueLatency"): 1}


def test_more_than_100_values_are_split_across_lines(validator: Any) -> None:
    from cloudqueue_aws.emf import EMF

    out = Writes()
    app = cq.App("shop", backend="memory://", middleware=[EMF(output=out)])

    @app.job
    def tick(payload: Order) -> None:
        pass

    tick.enqueue_many([Order(order_id=str(n)) for n in range(250)])
    app.drain()  # drain writes what the middleware buffered when it returns
    docs = [valid_emf(line, validator) for line in out.lines]
    assert [len(d["Duration"]) for d in docs] == [100, 100, 50]
    assert [d.get("Completed") for d in docs] == [250, None, None]  # the count once, on the first
    assert totals(docs) == {("tick", "ack", "Completed"): 250, ("tick", "ack", "Duration"): 250,
                            ("tick", "ack", "QueueLatency"): 250}
    assert {d["Queue"] for d in docs} == {"shop"}


def test_more_than_100_metrics_are_split_across_directives(validator: Any) -> None:
    from cloudqueue_aws.emf import _documents

    values = {f"m{n}": [float(n)] * 3 for n in range(150)}
    lines = _documents("shop", ["Queue"], {"Queue": "orders"}, values, 1_700_000_000_000)
    docs = [valid_emf(line, validator) for line in lines]
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs] == [100, 50]
    assert sum(len(d) - 2 for d in docs) == 150  # every metric once (less _aws and Queue)


def test_without_the_middleware_the_shim_flushes_nothing() -> None:
    app = cq.App("shop", backend="memory://")
    assert not app.dispatcher.buffered


@pytest.mark.parametrize(("options", "says"), [
    ({"namespace": "AWS/Lambda"}, "keeps namespaces starting with 'AWS/'"),
    ({"namespace": " "}, "1-255 characters"),
    ({"dimensions": {f"d{n}": "x" for n in range(28)}}, "27 beside Queue, JobType and Outcome"),
    ({"dimensions": {"JobType": "x"}}, "set by the middleware itself"),
    ({"dimensions": {"Service": ""}}, "non-blank string"),
])
def test_a_namespace_or_dimension_cloudwatch_would_refuse_is_refused_at_once(options: Any, says: str) -> None:
    from cloudqueue_aws.emf import EMF

    with pytest.raises(cq.ConfigurationError, match=r"EMF\(") as info:
        EMF(**options)
    assert says in str(info.value)


def test_a_worker_writes_what_it_added_up_when_it_stops(validator: Any) -> None:
    from datetime import timedelta as td

    from cloudqueue_aws.emf import EMF

    out = Writes()
    app = cq.App("shop", backend="memory://orders", middleware=[EMF(output=out, flush_every=td(hours=1))])

    @app.job
    def tick(payload: Order) -> None:
        pass

    tick.enqueue_many([Order(order_id=str(n)) for n in range(5)])
    app.worker(concurrency=2, handle_signals=False, poll_wait=td(milliseconds=50)).run(until_empty=True)
    [doc] = [valid_emf(line, validator) for line in out.lines]
    assert (doc["Queue"], doc["Completed"], len(doc["Duration"])) == ("orders", 5, 5)


def test_settles_piling_up_past_max_buffered_are_written_without_waiting(validator: Any) -> None:
    from cloudqueue_aws.emf import EMF

    out = Writes()
    emf = EMF(output=out, max_buffered=3)
    app = cq.App("shop", backend="memory://", middleware=[emf])

    @app.job
    def tick(payload: Order) -> None:
        pass

    tick.enqueue_many([Order(order_id=str(n)) for n in range(7)])
    app.drain(max_jobs=7)
    written = [valid_emf(line, validator)["Completed"] for line in out.lines]
    assert written == [3, 3, 1]  # two writes as the buffer filled, the rest when drain returned


def test_the_module_exports_the_middleware_and_costs_nothing_until_imported() -> None:
    import subprocess
    import sys

    import cloudqueue_aws.emf

    assert cloudqueue_aws.emf.__all__ == ["EMF"]
    loaded = subprocess.run([sys.executable, "-c", "import sys, cloudqueue_aws; "
                             "print('cloudqueue_aws.emf' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_each_of_an_apps_queues_is_its_own_dimension(validator: Any) -> None:
    from datetime import timedelta as td

    from cloudqueue_aws.emf import EMF

    out = Writes()
    app = cq.App("shop", queues={"critical": "memory://shop-critical", "default": "memory://shop"},
                 middleware=[EMF(output=out)])

    @app.job(queue="critical")
    def page(payload: Order) -> None:
        pass

    @app.job
    def tick(payload: Order) -> None:
        pass

    page.enqueue(Order(order_id="1"))
    tick.enqueue_many([Order(order_id="2"), Order(order_id="3")])
    app.worker(concurrency=1, handle_signals=False, poll_wait=td(milliseconds=50)).run(until_empty=True)
    docs = [valid_emf(line, validator) for line in out.lines]
    assert sorted((d["Queue"], d["JobType"], d["Completed"]) for d in docs) == [
        ("shop", "tick", 2), ("shop-critical", "page", 1)]
