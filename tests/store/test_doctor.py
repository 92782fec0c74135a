"""`cloudqueue doctor` checks the app's idempotency store: DynamoDB on moto server,
Firestore on Google's emulator."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
import cloudqueue.store
from cloudqueue.doctor import Severity, StoreUnderCheck, diagnose

from .stores import dynamodb_endpoint, dynamodb_table, firestore_host


class Order(BaseModel):
    order_id: str


def _app(store: str) -> cq.App:
    app = cq.App("shop", store=store)

    @app.job(once=True)
    def ship(payload: Order) -> None: ...

    return app


def _store_findings(app: cq.App) -> list[Any]:
    report = diagnose(app)
    assert report.checked[-1].startswith("store ")
    return [f for f in report.findings if f.queue.startswith("store ")]


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


def test_a_provisioned_dynamodb_table_has_no_findings(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    table = dynamodb_table(endpoint)
    assert _store_findings(_app(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")) == []


def test_a_missing_table_is_an_error_naming_the_terraform_fix(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    [finding] = _store_findings(_app(f"dynamodb://no-such-table?region=us-east-1&endpoint_url={endpoint}"))
    assert finding.severity is Severity.ERROR and finding.check == "table"
    assert "store_table = true" in finding.fix


def test_a_table_without_ttl_or_with_another_key_is_an_error(request: pytest.FixtureRequest) -> None:
    endpoint = dynamodb_endpoint(request)
    client = _client(endpoint)
    name = f"cq-bare-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PROVISIONED",
                        ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    findings = {f.check: f for f in _store_findings(_app(f"dynamodb://{name}?region=us-east-1&endpoint_url={endpoint}"))}
    assert set(findings) == {"key schema", "ttl", "index", "capacity"}
    assert findings["ttl"].severity is Severity.ERROR and "expires_at" in findings["ttl"].fix
    assert findings["capacity"].severity is Severity.NOTE
    assert findings["index"].severity is Severity.WARNING and "ensure_table" in findings["index"].fix
    assert "scans the whole table" in findings["index"].why
    client.close()


def test_a_firestore_store_on_the_emulator_is_reachable_and_ttl_is_noted(request: pytest.FixtureRequest) -> None:
    firestore_host(request.config)
    findings = _store_findings(_app(f"firestore://cq-test/store-{uuid.uuid4().hex[:8]}"))
    assert [(f.severity, f.check) for f in findings] == [(Severity.NOTE, "ttl")]


def test_the_firestore_ttl_policy_state_decides(request: pytest.FixtureRequest) -> None:
    firestore_host(request.config)  # the Google adapter with Firestore is installed
    from cloudqueue_gcp.doctor import ttl_findings
    from google.cloud.firestore_admin_v1 import Field

    target = StoreUnderCheck(url="firestore://p/c", store=cq.store.MemoryStore(), jobs=())
    active = Field(name="f", ttl_config=Field.TtlConfig(state=Field.TtlConfig.State.ACTIVE))
    assert ttl_findings(target, active, "c") == []
    [missing] = ttl_findings(target, None, "c")
    assert missing.severity is Severity.ERROR and "store_collection = 'c'" in missing.fix
    [needs_repair] = ttl_findings(target, Field(name="f", ttl_config=Field.TtlConfig(
        state=Field.TtlConfig.State.NEEDS_REPAIR)), "c")
    assert "NEEDS_REPAIR" in needs_repair.found


def test_an_app_without_a_store_checks_none() -> None:
    app = cq.App("shop")

    @app.job
    def ship(payload: Order) -> None: ...

    assert not [c for c in diagnose(app).checked if c.startswith("store ")]
