"""`cloudqueue terraform-vars` knows the app's idempotency store."""

from __future__ import annotations

from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import render_tfvars
from tests.unit.test_tfvars import comments, tfvars


class Order(BaseModel):
    order_id: str


def _app(store: str | None) -> cq.App:
    app = cq.App("shop", store=store)

    @app.job
    def ship(payload: Order) -> None: ...

    return app


def test_a_dynamodb_store_turns_the_aws_modules_table_on() -> None:
    text = render_tfvars(_app("dynamodb://shop-store?region=eu-west-1"), "aws-sqs-lambda")
    values = tfvars(text)
    assert values["store_table"] == "true" and values["store_table_name"] == '"shop-store"'
    assert "idempotency store is the DynamoDB table 'shop-store'" in comments(text)


def test_a_firestore_store_names_the_google_modules_collection() -> None:
    for module in ("gcp-pubsub", "gcp-cloud-tasks"):
        values = tfvars(render_tfvars(_app("firestore://acme/cq-store?database=jobs"), module))
        assert values["store_collection"] == '"cq-store"' and values["store_database"] == '"jobs"'


def test_no_store_or_another_clouds_store_sets_nothing() -> None:
    assert "store_table" not in tfvars(render_tfvars(_app(None), "aws-sqs-lambda"))
    text = render_tfvars(_app("firestore://acme/cq-store"), "aws-sqs-lambda")
    assert "store_table" not in tfvars(text)
    assert "not dynamodb://: the module makes no store" in comments(text)


def test_an_app_with_several_queues_gets_the_queues_map_and_one_store() -> None:
    app = cq.App("shop", queues={"critical": "memory://tfq-c", "default": "memory://tfq-d"},
                 store="dynamodb://shop-store?region=eu-west-1")

    @app.job(queue="critical")
    def page(payload: Order) -> None: ...

    @app.job
    def ship(payload: Order) -> None: ...

    text = render_tfvars(app, "aws-sqs-lambda")
    assert "queues = {\n  critical = {\n" in text
    # the store is the module's, at the top level, after the map; no queue entry carries it
    queues, store = text.split("queues = {", 1)[1].split("\n}\n", 1)
    assert "store" not in queues
    assert tfvars(store)["store_table"] == "true" and tfvars(store)["store_table_name"] == '"shop-store"'
    app.close()
    google = cq.App("shop", queues={"default": "memory://tfq-d", "bulk": "memory://tfq-b"},
                    store="firestore://acme/cq-store")

    @google.job(queue="bulk")
    def export(payload: Order) -> None: ...

    for module in ("gcp-pubsub", "gcp-cloud-tasks"):
        text = render_tfvars(google, module)
        queues, store = text.split("queues = {", 1)[1].split("\n}\n", 1)
        assert "bulk = {" in queues and "store" not in queues
        assert tfvars(store)["store_collection"] == '"cq-store"'
