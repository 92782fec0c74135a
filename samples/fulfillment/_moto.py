"""``python -m samples.fulfillment --moto``: the sample on SQS + DynamoDB, served by a
moto server this process starts on loopback (nothing leaves the machine)."""

from __future__ import annotations

import os
import socket
from typing import Any


def start() -> Any:
    """Start moto, create the queue (with its dead-letter queue) and the store's table, and
    point $CLOUDQUEUE_URL and $CLOUDQUEUE_STORE_URL at them; returns the server to stop."""
    try:
        import boto3
        from cloudqueue_aws import ensure_queue
        from cloudqueue_aws.dynamodb import ensure_table
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise SystemExit(f"--moto needs moto's server and the AWS adapter ({exc.name} is missing): "
                         '.venv/bin/pip install -e adapters/aws "moto[server]"') from exc
    import logging

    logging.getLogger("werkzeug").disabled = True  # moto's server logs every request
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")  # moto accepts any; boto3 wants some
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    pair = ensure_queue("fulfillment", client=sqs)
    ensure_table("fulfillment-store", client=dynamodb)
    sqs.close()
    dynamodb.close()
    os.environ["CLOUDQUEUE_URL"] = f"sqs://{pair.name}?region=us-east-1&endpoint_url={endpoint}"
    os.environ["CLOUDQUEUE_STORE_URL"] = f"dynamodb://fulfillment-store?region=us-east-1&endpoint_url={endpoint}"
    return server
