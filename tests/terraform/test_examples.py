"""The example roots' entry points run the samples/orders jobs as deployed."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.conftest import missing_component

from .conftest import TERRAFORM

EVENTS = Path(__file__).resolve().parents[1] / "events"
ORDER = {"order_id": "1001", "customer_email": "ana@example.com", "payment_id": "pay-1",
         "lines": [{"sku": "TEA-1", "quantity": 2, "unit_price": "4.50"}]}


class LambdaContext:
    """The part of Lambda's context object the shim reads."""

    function_name = "orders-worker"
    aws_request_id = "6bc28136-0b3a-4c3e-9d43-2b1e1c2f5e10"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_aws_example_handler_runs_the_orders_jobs_from_an_sqs_batch() -> None:
    try:
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        missing_component("cloudqueue-aws (the Lambda shim)", "pip install -e adapters/aws")
    from samples.orders import jobs

    entry = load(TERRAFORM / "examples" / "aws" / "orders_lambda.py", "orders_lambda")
    template = json.loads((EVENTS / "sqs_orders_mixed_batch.json").read_text())["Records"][0]
    records: list[dict[str, Any]] = []
    for index, name in enumerate(("generate_invoice", "update_analytics")):
        record = copy.deepcopy(template)
        record["messageId"] = f"m-{index}"
        record["body"] = jobs.app.get_job(name).message(ORDER).body.decode()
        records.append(record)
    before = len(jobs.journal)
    try:
        response = entry.handler({"Records": records}, LambdaContext())
    finally:
        jobs.app.dispatcher.close()  # the event loop the async job ran on
    assert response == {"batchItemFailures": []}
    ran = jobs.journal[before:]
    assert [line.split()[0] for line in ran] == ["generate_invoice", "update_analytics"]

