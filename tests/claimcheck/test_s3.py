"""The claim check on AWS: SQS (moto server) carries the reference, S3 (moto server) the payload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cloudqueue_aws import SQSBackend, lambda_handler
from cloudqueue_aws.s3 import S3PayloadStore
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue import envelope
from tests.aws.conftest import FakeLambdaContext

pytestmark = pytest.mark.timeout(180)

MB = 1024 * 1024


class Upload(BaseModel):
    name: str
    blob: str


def big(name: str = "report.csv", n: int = 5 * MB) -> Upload:
    # not one repeated byte: a payload that is mostly one letter compresses to nothing on
    # some transports, and the point is to move 5 MB
    return Upload(name=name, blob=("0123456789abcdef" * (n // 16 + 1))[:n])


def objects(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def setup(sqs: Any, s3: Any, s3_bucket: str, make_queue: Any, moto_server: str) -> Iterator[Any]:
    pair = make_queue(visibility_timeout=timedelta(seconds=30))
    url = f"s3://{s3_bucket}/jobs?region=us-east-1&endpoint_url={moto_server}"

    def app(**options: Any) -> cq.App:
        return cq.App("shop", backend=SQSBackend(pair.url, client=sqs), payload_store=url, **options)

    yield pair, app


def sqs_event(sqs: Any, pair: Any) -> dict[str, Any]:
    """The queue's messages as Lambda's event source mapping hands them over."""
    messages = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                   MessageSystemAttributeNames=["All"],
                                   MessageAttributeNames=["All"]).get("Messages") or []
    assert messages, "nothing came back from the queue"
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                       "SentTimestamp": m["Attributes"]["SentTimestamp"]},
        "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": pair.arn, "awsRegion": "us-east-1"} for m in messages]}


def test_from_url_reads_bucket_prefix_and_client_options() -> None:
    from cloudqueue.payloads import from_url

    store = from_url("s3://shop-payloads/jobs/large?region=eu-west-1&endpoint_url=http://127.0.0.1:9")
    assert isinstance(store, S3PayloadStore)
    assert (store.bucket, store.prefix, store.url) == ("shop-payloads", "jobs/large", "s3://shop-payloads/jobs/large")
    assert store.key_of("s3://shop-payloads/jobs/large/j1/ab") == "j1/ab"
    assert store.key_of("s3://other/jobs/large/j1/ab") is None
    with pytest.raises(cq.ConfigurationError, match="did you mean 'region'"):
        from_url("s3://b/p?regoin=eu-west-1")


def test_a_5_mb_payload_through_sqs_and_the_worker_arrives_intact(sqs: Any, s3: Any, s3_bucket: str,
                                                                   setup: Any) -> None:
    pair, make_app = setup
    app = make_app()
    seen: list[Upload] = []

    @app.job
    def ingest(payload: Upload) -> None:
        seen.append(payload)

    job_id = ingest.enqueue(big())
    [key] = objects(s3, s3_bucket)
    assert key.startswith(f"jobs/{job_id}/")
    body = sqs.receive_message(QueueUrl=pair.url, VisibilityTimeout=0)["Messages"][0]["Body"]
    raw = json.loads(body)
    assert (raw["cqv"], raw["dataref"], "data" in raw) == (2, f"s3://{s3_bucket}/{key}", False)
    assert len(body) < 1024
    stats = app.worker(concurrency=2, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    assert stats.succeeded == 1 and seen == [big()]
    assert objects(s3, s3_bucket) == []  # deleted after the ack
    app.close()


def test_a_5_mb_payload_through_the_lambda_shim_arrives_intact(sqs: Any, s3: Any, s3_bucket: str,
                                                                setup: Any) -> None:
    pair, make_app = setup
    producer, consumer = make_app(), make_app()
    seen: list[Upload] = []
    producer.job(name="ingest")(_noop)

    @consumer.job(name="ingest")
    def ingest(payload: Upload) -> None:
        seen.append(payload)

    producer.get_job("ingest").enqueue_many([big("a"), big("b")])
    assert len(objects(s3, s3_bucket)) == 2
    answer = lambda_handler(consumer, client=sqs)(sqs_event(sqs, pair), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}
    assert sorted(p.name for p in seen) == ["a", "b"] and all(p == big(p.name) for p in seen)
    assert objects(s3, s3_bucket) == []


def test_a_changed_object_is_dead_lettered_by_the_lambda_shim_and_kept(sqs: Any, s3: Any, s3_bucket: str,
                                                                        setup: Any) -> None:
    pair, make_app = setup
    app = make_app()
    app.job(name="ingest")(_must_not_run)
    app.get_job("ingest").enqueue(big(n=MB))
    [key] = objects(s3, s3_bucket)
    data = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=s3_bucket, Key=key, Body=data[:-3] + b'x"}')
    answer = lambda_handler(app, client=sqs)(sqs_event(sqs, pair), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}  # dead-lettered, so done here
    [letter] = SQSBackend(pair.url, client=sqs).dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and "has digest sha256:" in letter.reason
    assert objects(s3, s3_bucket) == [key]


def test_a_deleted_object_is_dead_lettered_as_missing_by_the_worker(sqs: Any, s3: Any, s3_bucket: str,
                                                                     setup: Any) -> None:
    pair, make_app = setup
    app = make_app()
    app.job(name="ingest")(_must_not_run)
    app.get_job("ingest").enqueue(big(n=MB))
    [key] = objects(s3, s3_bucket)
    s3.delete_object(Bucket=s3_bucket, Key=key)
    stats = app.worker(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False).run(until_empty=True)
    assert stats.dead_lettered == 1
    [letter] = SQSBackend(pair.url, client=sqs).dead_letters()
    assert letter.kind is cq.ReasonKind.POISON and f"s3://{s3_bucket}/{key} is missing" in letter.reason


def test_a_redriven_dead_letter_runs_with_its_payload(sqs: Any, s3: Any, s3_bucket: str, setup: Any) -> None:
    _pair, make_app = setup
    app = make_app()
    runs: list[int] = []

    @app.job
    def ingest(payload: Upload) -> None:
        runs.append(len(payload.blob))
        if len(runs) == 1:
            raise cq.Permanent("the warehouse was closed")

    ingest.enqueue(big())
    worker = dict(concurrency=1, poll_wait=timedelta(seconds=1), handle_signals=False)
    assert app.worker(**worker).run(until_empty=True).dead_lettered == 1
    assert len(objects(s3, s3_bucket)) == 1  # kept for the redrive
    backend = app.backend
    assert isinstance(backend, SQSBackend)
    assert backend.redrive() == 1
    assert app.worker(**worker).run(until_empty=True).succeeded == 1
    assert runs == [5 * MB, 5 * MB] and objects(s3, s3_bucket) == []


def test_an_older_consumer_dead_letters_naming_the_version(sqs: Any, s3_bucket: str, setup: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pair, make_app = setup
    app = make_app()
    app.job(name="ingest")(_must_not_run)
    app.get_job("ingest").enqueue(big(n=MB))
    monkeypatch.setattr(envelope, "READ_VERSIONS", (1,))  # what a release before the claim check reads
    answer = lambda_handler(app, client=sqs)(sqs_event(sqs, pair), FakeLambdaContext(60_000))
    assert answer == {"batchItemFailures": []}
    [letter] = SQSBackend(pair.url, client=sqs).dead_letters()
    assert "envelope version 2 is newer" in letter.reason and "reads envelope version 2" in letter.reason


def test_a_bucket_that_is_not_there_fails_the_enqueue_with_the_fix(sqs: Any, make_queue: Any,
                                                                   moto_server: str) -> None:
    pair = make_queue()
    app = cq.App("shop", backend=SQSBackend(pair.url, client=sqs),
                 payload_store=f"s3://no-such-bucket-here/jobs?region=us-east-1&endpoint_url={moto_server}")
    app.job(name="ingest")(_noop)
    with pytest.raises(cq.ConfigurationError, match="create the bucket"):
        app.get_job("ingest").enqueue(big(n=MB))
    assert sqs.receive_message(QueueUrl=pair.url, VisibilityTimeout=0).get("Messages") is None


def test_an_unreachable_s3_fails_the_attempt_and_keeps_the_message(sqs: Any, s3: Any, s3_bucket: str,
                                                                   setup: Any) -> None:
    pair, make_app = setup
    producer = make_app()
    producer.job(name="ingest")(_noop)
    producer.get_job("ingest").enqueue(big(n=MB))
    # the consumer's S3 endpoint answers nothing (a closed loopback port)
    from tests.conftest import free_port

    consumer = cq.App("shop", backend=SQSBackend(pair.url, client=sqs), payload_store=S3PayloadStore(
        s3_bucket, "jobs", region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}"))
    consumer.job(name="ingest")(_must_not_run)
    answer = lambda_handler(consumer, client=sqs)(sqs_event(sqs, pair), FakeLambdaContext(60_000))
    assert len(answer["batchItemFailures"]) == 1  # retried: stays in the queue
    assert len(objects(s3, s3_bucket)) == 1


def _noop(payload: Upload) -> None:
    pass


def _must_not_run(payload: Upload) -> None:
    raise AssertionError("must not run")
