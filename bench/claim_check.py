"""The claim check's round trip on moto's server (SQS + S3 on loopback): milliseconds per job.

One round trip is everything between a producer holding a large payload and a consumer
running the job with it: the offload to S3, the send, the receive, the fetch, checking
and validating the payload, the job, and the clean-up (message and object deleted).

    cloudqueue claim check       job.enqueue(payload) with payload_store="s3://...",
                                 then app.drain() on the queue (sha256 checked, object
                                 deleted after the ack)
    SQS extended client          AWS's amazon-sqs-extended-client: send_message with
                                 large_payload_support, receive_message (fetches from
                                 S3), pydantic model_validate_json, delete_message
                                 (deletes the object)
    boto3 by hand                put_object, send_message with a pointer, receive_message,
                                 get_object, model_validate_json, delete_message,
                                 delete_object: the least a hand-written claim check does

Every row moves the same payload (``--size`` MB of JSON, default 5) and serializes it
on the clock, as a producer does; the rows take turns
within each round; medians of ``--runs`` rounds. moto runs in a process of its own (as
in bench.sqs_enqueue): its HTTP handling of the 5 MB bodies is most of every row's time,
so the ratios say what each client adds on top.

    python -m bench.claim_check [--size 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from pydantic import BaseModel

from ._table import interleaved_medians, print_table
from .sqs_enqueue import moto_server

CLOUDQUEUE = "cloudqueue claim check"
EXTENDED = "SQS extended client"
BY_HAND = "boto3 by hand"


class Upload(BaseModel):
    name: str
    blob: str


def payload(megabytes: float) -> Upload:
    size = int(megabytes * 1024 * 1024)
    return Upload(name="report.csv", blob=("0123456789abcdef" * (size // 16 + 1))[:size])


def client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


class Setup:
    """A queue and a bucket on the moto server, and the clients of each row."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.sqs = client("sqs", endpoint)
        self.s3 = client("s3", endpoint)
        name = f"claim-{uuid.uuid4().hex[:8]}"
        self.url = self.sqs.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
        self.bucket = name
        self.s3.create_bucket(Bucket=name)

    def app(self) -> Any:
        from cloudqueue_aws import SQSBackend
        from cloudqueue_aws.s3 import S3PayloadStore

        import cloudqueue as cq

        return cq.App("bench", backend=SQSBackend(self.url, client=self.sqs),
                      payload_store=S3PayloadStore(self.bucket, "jobs", client=self.s3))

    def extended(self) -> Any:
        # imported last: the package swaps boto3's Session class for its own on import
        from sqs_extended_client import SQSExtendedClientSession

        sqs = SQSExtendedClientSession(aws_access_key_id="testing", aws_secret_access_key="testing",
                                       region_name="us-east-1").client("sqs", endpoint_url=self.endpoint)
        sqs.large_payload_support = self.bucket
        sqs.use_legacy_attribute = False
        sqs.delete_payload_from_s3 = True  # off by default: the same clean-up as the other rows
        sqs.s3_client = self.s3
        return sqs

    def empty(self) -> bool:
        reply = self.s3.list_objects_v2(Bucket=self.bucket)
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["All"])["Attributes"]
        waiting = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        return not reply.get("Contents") and waiting == 0

    def close(self) -> None:
        for item in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            self.s3.delete_object(Bucket=self.bucket, Key=item["Key"])
        self.s3.delete_bucket(Bucket=self.bucket)
        self.sqs.delete_queue(QueueUrl=self.url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.claim_check", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=float, default=5, help="payload size in MB (default 5)")
    parser.add_argument("--runs", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args(argv)
    value = payload(args.size)

    with moto_server() as endpoint:
        setup = Setup(endpoint)
        app = setup.app()
        seen: list[int] = []

        @app.job
        def ingest(payload: Upload) -> None:
            seen.append(len(payload.blob))

        app.backend.capabilities  # noqa: B018 - GetQueueAttributes once, off the clock
        extended = setup.extended()
        sqs, s3 = setup.sqs, setup.s3

        def cloudqueue_row() -> float:
            start = time.perf_counter()
            ingest.enqueue(value)
            report = app.drain()
            elapsed = time.perf_counter() - start
            assert report.succeeded == 1 and seen[-1] == len(value.blob), report
            return elapsed

        def extended_row() -> float:
            start = time.perf_counter()
            extended.send_message(QueueUrl=setup.url, MessageBody=value.model_dump_json())
            [message] = extended.receive_message(QueueUrl=setup.url, MaxNumberOfMessages=1,
                                                 MessageAttributeNames=["All"])["Messages"]
            got = Upload.model_validate_json(message["Body"])
            extended.delete_message(QueueUrl=setup.url, ReceiptHandle=message["ReceiptHandle"])
            elapsed = time.perf_counter() - start
            assert len(got.blob) == len(value.blob)
            return elapsed

        def by_hand_row() -> float:
            start = time.perf_counter()
            key = f"jobs/{uuid.uuid4().hex}"
            s3.put_object(Bucket=setup.bucket, Key=key, Body=value.__pydantic_serializer__.to_json(value))
            sqs.send_message(QueueUrl=setup.url, MessageBody=json.dumps({"bucket": setup.bucket, "key": key}))
            [message] = sqs.receive_message(QueueUrl=setup.url, MaxNumberOfMessages=1)["Messages"]
            pointer = json.loads(message["Body"])
            data = s3.get_object(Bucket=pointer["bucket"], Key=pointer["key"])["Body"].read()
            got = Upload.model_validate_json(data)
            sqs.delete_message(QueueUrl=setup.url, ReceiptHandle=message["ReceiptHandle"])
            s3.delete_object(Bucket=pointer["bucket"], Key=pointer["key"])
            elapsed = time.perf_counter() - start
            assert len(got.blob) == len(value.blob)
            return elapsed

        try:
            rows = interleaved_medians(args.runs, {CLOUDQUEUE: cloudqueue_row, EXTENDED: extended_row,
                                                   BY_HAND: by_hand_row})
            assert setup.empty(), "a row left a message or an object behind"
        finally:
            app.close()
            setup.close()
    print_table(f"Claim check round trip on moto server (SQS + S3), a {args.size:g} MB payload, "
                f"median of {args.runs}", "ms", [(name, value * 1000) for name, value in rows],
                higher_is_better=False, against=BY_HAND)
    values = dict(rows)
    print(f"  {CLOUDQUEUE} takes {values[CLOUDQUEUE] / values[EXTENDED]:.2f}x the time of the {EXTENDED} "
          f"(it also checks the payload's sha256 and size)")


if __name__ == "__main__":
    main()
