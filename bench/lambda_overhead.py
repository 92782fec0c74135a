"""Lambda shim per-record cost vs a bare json + pydantic loop, on one 1000-record SQS event.

Both sides parse each record's body and validate the payload with the same pydantic
model; the shim also checks the envelope, builds the job context, runs a no-op job and
builds the partial batch response. Every record succeeds, so no SQS call is made (and
no boto3 is imported). Runs alternate between the two, in one process; medians.

    python -m bench.lambda_overhead [--records 1000] [--runs 41]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ._table import print_table

EVENT = Path(__file__).parent.parent / "tests" / "events" / "sqs_receipts_batch.json"


class Receipt(BaseModel):
    to: str
    order_id: str


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=41)
    args = parser.parse_args()

    import cloudqueue_aws

    import cloudqueue as cq

    app = cq.App("shop", backend="memory://")

    @app.job
    def send_receipt(payload: Receipt) -> None:
        pass

    handler = cloudqueue_aws.lambda_handler(app)
    event = build_event(args.records)
    context = Context()

    def shim() -> float:
        start = time.perf_counter()
        response = handler(event, context)
        elapsed = time.perf_counter() - start
        assert response == {"batchItemFailures": []}, response
        return elapsed

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

    for _ in range(3):  # warm up all three
        bare_loop(event)
        core_only()
        shim()
    bare, core, ours = [], [], []
    for _ in range(args.runs):
        bare.append(bare_loop(event))
        core.append(core_only())
        ours.append(shim())
    per_record = 1e6 / args.records
    rows = [("json.loads + model_validate", statistics.median(bare) * per_record),
            ("core dispatcher prepare + run", statistics.median(core) * per_record),
            ("cloudqueue_aws.lambda_handler", statistics.median(ours) * per_record)]
    print_table(f"Lambda shim, {args.records}-record SQS event, median of {args.runs} runs",
                "us per record", rows, higher_is_better=False, against="json.loads + model_validate")
    imported = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))
    print(f"  boto3/botocore imported: {imported or 'none'}")


if __name__ == "__main__":
    main()
