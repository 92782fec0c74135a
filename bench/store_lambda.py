"""The idempotency store's per-record cost on the Lambda shim, against Powertools' idempotency
utility, on the same DynamoDB (moto's server on loopback, in a process of its own).

Every record is a distinct job with its own idempotency key. Rows, per record:

- ``lambda_handler``, no store: the floor (no DynamoDB call);
- ``lambda_handler`` with ``store="dynamodb://..."``, first delivery: claim (one conditional
  UpdateItem) and complete (one conditional UpdateItem) around the job;
- the same event delivered again: each record is acknowledged unrun (one refused
  UpdateItem that returns the completed record);
- Powertools' ``BatchProcessor`` with a record handler under ``idempotent_function``
  (``DynamoDBPersistenceLayer``, the key from the record body's ``cqkey``), first
  delivery (a conditional PutItem, then an UpdateItem) and again (a refused PutItem).

Each side has a table of its own; a first-delivery run gets an event of fresh keys made
beforehand. Runs alternate between rows in one process; medians. moto's server answers
each call in about a millisecond, so the rows measure mostly the calls each makes.

    python -m bench.store_lambda [--records 100] [--runs 9]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._table import interleaved_medians, print_table
from .lambda_overhead import Context, Receipt, build_event
from .sqs_enqueue import moto_server

NO_STORE = "lambda_handler, no store"
OURS_FIRST = "lambda_handler + DynamoDB store, first delivery"
OURS_AGAIN = "lambda_handler + DynamoDB store, delivered again"
PEER_FIRST = "Powertools idempotent_function, first delivery"
PEER_AGAIN = "Powertools idempotent_function, delivered again"


def keyed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a fresh idempotency key (``cqkey``) in each record's envelope."""
    out = copy.deepcopy(event)
    for record in out["Records"]:
        body = json.loads(record["body"])
        body["cqkey"] = f"receipt-{uuid.uuid4().hex}"
        record["body"] = json.dumps(body, separators=(",", ":"))
        record["messageId"] = str(uuid.uuid4())
    return out


def make_table(client: Any, name: str) -> None:
    from cloudqueue_aws.dynamodb import ensure_table

    ensure_table(name, client=client)


def ours(endpoint: str, table: str | None) -> Callable[[dict[str, Any]], float]:
    from cloudqueue_aws import lambda_handler

    import cloudqueue as cq

    store = None if table is None else f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}"
    app = cq.App("receipts", backend="memory://", store=store)

    @app.job(name="send_receipt")
    def send_receipt(payload: Receipt) -> None:
        pass

    handler = lambda_handler(app)

    def run(event: dict[str, Any]) -> float:
        start = time.perf_counter()
        response = handler(event, Context())
        elapsed = time.perf_counter() - start
        assert response == {"batchItemFailures": []}, response
        return elapsed

    return run


def powertools(client: Any, table: str) -> Callable[[dict[str, Any]], float]:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    config = IdempotencyConfig(event_key_jmespath="cqkey")
    processor = BatchProcessor(event_type=EventType.SQS)
    validate = Receipt.model_validate

    @idempotent_function(data_keyword_argument="envelope", config=config, persistence_store=layer)
    def send_receipt(envelope: dict[str, Any]) -> None:
        validate(envelope["data"])

    def record_handler(record: Any) -> None:
        send_receipt(envelope=json.loads(record.body))

    def run(event: dict[str, Any]) -> float:
        context = Context()
        start = time.perf_counter()
        config.register_lambda_context(context)  # type: ignore[arg-type]
        response = process_partial_response(event=event, record_handler=record_handler,
                                            processor=processor, context=context)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
        assert response == {"batchItemFailures": []}, response
        return elapsed

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100, help="records in the SQS event")
    parser.add_argument("--runs", type=int, default=9, help="runs per row (alternating)")
    args = parser.parse_args(argv)
    try:
        import aws_lambda_powertools  # noqa: F401
        import boto3
        import cloudqueue_aws  # noqa: F401
    except ImportError:
        raise SystemExit('bench.store_lambda needs cloudqueue-aws, moto and Powertools: '
                         'pip install -e ".[bench]" -e "adapters/aws[test]"') from None
    import os

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    base = build_event(args.records)
    with moto_server() as endpoint:
        client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        make_table(client, "bench-cloudqueue")
        make_table(client, "bench-powertools")
        # first deliveries need keys never seen: one fresh event per run and row, made now
        fresh = {row: [keyed(base) for _ in range(args.runs + 1)] for row in (OURS_FIRST, PEER_FIRST)}
        again = {row: keyed(base) for row in (OURS_AGAIN, PEER_AGAIN)}
        plain, stored, peer = ours(endpoint, None), ours(endpoint, "bench-cloudqueue"), \
            powertools(client, "bench-powertools")
        stored(again[OURS_AGAIN])  # completed once: every later run is a duplicate
        peer(again[PEER_AGAIN])
        plain(base)  # warm both paths (imports, clients, connections) outside the timing
        stored(fresh[OURS_FIRST].pop())
        peer(fresh[PEER_FIRST].pop())
        per_record = 1e6 / args.records
        rows = interleaved_medians(args.runs, {
            NO_STORE: lambda: plain(base) * per_record,
            OURS_FIRST: lambda: stored(fresh[OURS_FIRST].pop()) * per_record,
            OURS_AGAIN: lambda: stored(again[OURS_AGAIN]) * per_record,
            PEER_FIRST: lambda: peer(fresh[PEER_FIRST].pop()) * per_record,
            PEER_AGAIN: lambda: peer(again[PEER_AGAIN]) * per_record,
        })
        client.close()
    print_table(f"Idempotency store on the Lambda shim, {args.records}-record SQS event, DynamoDB on "
                f"moto server, median of {args.runs} runs", "µs/record", rows, higher_is_better=False,
                against=PEER_FIRST)
    values = dict(rows)
    print(f"  first delivery: cloudqueue is {values[OURS_FIRST] / values[PEER_FIRST]:.2f}x Powertools' "
          f"per-record time; delivered again: {values[OURS_AGAIN] / values[PEER_AGAIN]:.2f}x")


if __name__ == "__main__":
    main()
