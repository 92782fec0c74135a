"""`cloudqueue terraform-vars` knows the app's payload store: the module's payload_bucket."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.payloads.memory import MemoryPayloadStore
from cloudqueue.tfvars import render_tfvars
from tests.unit.test_tfvars import comments


class Order(BaseModel):
    order_id: str


def _app(payload_store: object, backend: str = "memory://", **options: object) -> cq.App:
    app = cq.App("shop", backend=backend, payload_store=payload_store, **options)  # type: ignore[arg-type]

    @app.job
    def ship(payload: Order) -> None: ...

    return app


def block(text: str, name: str) -> dict[str, str]:
    """The assignments inside ``name = { ... }``."""
    body = text.split(f"\n{name} = {{\n", 1)[1].split("\n}", 1)[0]
    pairs = (line.split("=", 1) for line in body.splitlines())
    return {key.strip(): value.strip() for key, value in pairs}


def test_an_s3_store_names_the_aws_modules_bucket_and_prefix() -> None:
    text = render_tfvars(_app("s3://shop-payloads/imports?region=eu-west-1"), "aws-sqs-lambda")
    assert block(text, "payload_bucket") == {"name": '"shop-payloads"', "prefix": '"imports"'}
    said = comments(text)
    assert "offloads large payloads to s3://shop-payloads/imports" in said
    assert "the longest queue retention + the dead-letter queue's retention + max_delay_days" in said


def test_a_gcs_store_names_the_google_modules_bucket_and_the_queues_location() -> None:
    tasks = _app("gs://shop-payloads/imports", backend="cloudtasks://acme/europe-west1/imports")
    text = render_tfvars(tasks, "gcp-cloud-tasks")
    assert block(text, "payload_bucket") == {"location": '"europe-west1"', "name": '"shop-payloads"',
                                             "prefix": '"imports"'}
    assert "31 days" in comments(text)
    text = render_tfvars(_app("gs://shop-payloads/imports"), "gcp-pubsub")
    assert block(text, "payload_bucket") == {"name": '"shop-payloads"', "prefix": '"imports"'}
    assert "payload_bucket.location is required" in comments(text)


def test_another_clouds_store_or_none_sets_no_bucket() -> None:
    assert "payload_bucket" not in render_tfvars(_app(None), "aws-sqs-lambda")
    text = render_tfvars(_app("gs://shop-payloads/imports"), "aws-sqs-lambda")
    assert "payload_bucket =" not in text and "is gs://, not s3://" in comments(text)
    text = render_tfvars(_app(MemoryPayloadStore()), "gcp-pubsub")
    assert "payload_bucket =" not in text and "is memory://, not gs://" in comments(text)


def test_a_url_without_a_prefix_says_what_the_module_expects() -> None:
    text = render_tfvars(_app("s3://shop-payloads"), "aws-sqs-lambda")
    assert block(text, "payload_bucket") == {"name": '"shop-payloads"'}
    assert "should be s3://shop-payloads/<name>" in comments(text)


def test_with_queues_and_a_store_the_bucket_is_the_modules_own() -> None:
    app = cq.App("shop", queues={"critical": "memory://tfp-c", "default": "memory://tfp-d"},
                 store="dynamodb://shop-store?region=eu-west-1", payload_store="s3://shop-payloads/shop")

    @app.job(queue="critical")
    def page(payload: Order) -> None: ...

    text = render_tfvars(app, "aws-sqs-lambda")
    queues, rest = text.split("queues = {", 1)[1].split("\n}\n", 1)
    assert "payload" not in queues and "store_table" in rest
    assert block(text, "payload_bucket") == {"name": '"shop-payloads"', "prefix": '"shop"'}
