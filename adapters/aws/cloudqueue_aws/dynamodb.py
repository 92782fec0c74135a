"""The idempotency store on DynamoDB: ``dynamodb://TABLE?region=...&endpoint_url=...``.

One item per key in a table whose partition key is the string ``id``; ``expires_at``
(epoch seconds) is the table's TTL attribute, so DynamoDB deletes lapsed records itself.
Every write is one conditional PutItem / UpdateItem / DeleteItem, so two consumers
racing on a key cannot both claim it: a new key is claimed with one PutItem, a released
or lapsed one with an UpdateItem that counts the run. The Terraform module ``aws-sqs-lambda`` makes the table
(``store_table = true``); ``ensure_table`` makes one for local work and tests.

    item: id (S), status (S), token (S), runs (N), lease_until (N), expires_at (N, TTL),
          job_type (S), job_id (S), value (S, the JSON return value), completed_at (N)
    document (flows): id (S), version (N), doc (S, JSON), expires_at (N, TTL); written with
          one PutItem conditioned on the version read (``attribute_not_exists`` for the first);
          listed by key prefix with a filtered, paginated Scan (the table has no sort key)

boto3 is imported when the store first calls DynamoDB, not when the module loads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cloudqueue import BackendError, ConfigurationError
from cloudqueue.backends.options import parse_options
from cloudqueue.store import Claim, Document, Record, Status, Store

from ._errors import error_code, translate

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["KEY_ATTRIBUTE", "PARENT_ATTRIBUTE", "PARENT_INDEX", "TTL_ATTRIBUTE", "DynamoDBStore", "ensure_table",
           "from_url"]

#: the table's partition key (a string)
KEY_ATTRIBUTE = "id"
#: the attribute DynamoDB's TTL deletes records by (epoch seconds)
TTL_ATTRIBUTE = "expires_at"
OPTIONS = ("region", "endpoint_url")
_INSTALL_HINT = 'pip install "cloudqueue[aws]"'
log = logging.getLogger("cloudqueue")
#: the number-set attribute ``add_member`` keeps (a flow's finished children)
_MEMBERS = "members"
#: a document's key up to its second "/" (``shop/flow`` for ``shop/flow/order-1``): the
#: partition key of the sparse index ``scan`` queries (records have no such attribute)
PARENT_ATTRIBUTE = "parent"
#: the global secondary index on ``parent`` (sort key ``id``, keys only)
PARENT_INDEX = "by_parent"
#: BatchGetItem calls for the keys DynamoDB left unprocessed before a load gives up
_BATCH_ATTEMPTS = 8
_NAMES = {"#id": KEY_ATTRIBUTE, "#st": "status", "#tk": "token", "#ru": "runs", "#lu": "lease_until",
          "#ex": TTL_ATTRIBUTE, "#jt": "job_type", "#ji": "job_id", "#v": "value", "#ca": "completed_at"}
_CLAIM = ("SET #st = :ip, #tk = :tk, #lu = :lu, #ex = :ex, #jt = :jt, #ji = :ji, "
          "#ru = if_not_exists(#ru, :zero) + :one REMOVE #v, #ca")
#: no record, or one past its TTL (DynamoDB deletes lapsed items lazily)
_ABSENT_OR_LAPSED = "attribute_not_exists(#id) OR #ex <= :now"
#: live, not completed, and its lease run out (released claims have lease 0)
_CLAIMABLE = "#ex > :now AND #st <> :done AND #lu <= :now"
_MINE = "#tk = :tk AND #st = :ip"
_CONDITIONAL = "ConditionalCheckFailedException"


class DynamoDBStore(Store):
    """Idempotency records in a DynamoDB table.

    Args:
        table: the table's name.
        client: a boto3 DynamoDB client (default: one made on first use from ``region``
            and ``endpoint_url``).
    """

    scheme = "dynamodb"
    max_document_size = 390_000  # 400 KB an item, less its key and other attributes

    def __init__(self, table: str, *, client: DynamoDBClient | None = None, region: str | None = None,
                 endpoint_url: str | None = None) -> None:
        if not table:
            raise ConfigurationError("DynamoDBStore needs a table name: dynamodb://TABLE?region=...")
        self.table = table
        #: whether the table has the index ``scan`` queries (None: not known yet)
        self._indexed: bool | None = None
        self._client = client
        self._owns_client = client is None
        self._region = region
        self._endpoint_url = endpoint_url
        self._lock = threading.Lock()

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(self._region, self._endpoint_url)
        return self._client

    # -- the primitives ----------------------------------------------------------------
    def claim(self, key: str, *, token: str, now: datetime, lease_until: datetime,
              expires_at: datetime, job_type: str | None = None, job_id: str | None = None) -> Claim:
        # The common case, a key never seen, is one conditional PutItem; a refusal returns
        # the record in the way, and only a released or lapsed claim takes a second call.
        fresh = Record(key, Status.IN_PROGRESS, token, 1, lease_until, expires_at, job_type, job_id)
        now_n = _n(now.timestamp())
        for _ in range(5):  # a record deleted or changed between two calls: look again
            try:
                with _translated(self.table, "claim (PutItem)"):
                    self.client.put_item(
                        TableName=self.table, Item=_item(fresh), ConditionExpression=_ABSENT_OR_LAPSED,
                        ExpressionAttributeNames={"#id": KEY_ATTRIBUTE, "#ex": TTL_ATTRIBUTE},
                        ExpressionAttributeValues={":now": now_n}, ReturnValuesOnConditionCheckFailure="ALL_OLD")
                return Claim(True, fresh)
            except _Conditional as refused:
                old = refused.item or self._item(key)
            if old is None:
                continue
            record = _record(old)
            if not record.claimable(now):
                return Claim(False, record)
            # released, or its lease ran out: take it over, counting one more run
            values = {":ip": _s(Status.IN_PROGRESS.value), ":done": _s(Status.COMPLETED.value), ":tk": _s(token),
                      ":lu": _n(lease_until.timestamp()), ":ex": _n(math.ceil(expires_at.timestamp())),
                      ":jt": _s(job_type or ""), ":ji": _s(job_id or ""), ":zero": _n(0), ":one": _n(1),
                      ":now": now_n}
            try:
                with _translated(self.table, "claim (UpdateItem)"):
                    answer = self.client.update_item(
                        TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)}, UpdateExpression=_CLAIM,
                        ConditionExpression=_CLAIMABLE, ExpressionAttributeNames=_names(_CLAIM, _CLAIMABLE),
                        ExpressionAttributeValues=values, ReturnValues="ALL_NEW")
                return Claim(True, _record(answer["Attributes"]))
            except _Conditional:
                continue  # someone else took it first: look at what they wrote
        raise BackendError(f"DynamoDB table {self.table!r}: the record {key!r} kept changing under "
                           "its claim; the delivery is retried")

    def extend(self, key: str, *, token: str, lease_until: datetime) -> bool:
        return self._update(key, token, "SET #lu = :lu", {":lu": _n(lease_until.timestamp())}, "extend")

    def complete(self, key: str, *, token: str, now: datetime, expires_at: datetime,
                 value: str | None = None) -> bool:
        values = {":done": _s(Status.COMPLETED.value), ":zero": _n(0), ":ca": _n(now.timestamp()),
                  ":ex": _n(math.ceil(expires_at.timestamp()))}
        expression = "SET #st = :done, #lu = :zero, #ca = :ca, #ex = :ex"
        if value is not None:
            expression += ", #v = :v"
            values[":v"] = _s(value)
        return self._update(key, token, expression, values, "complete")

    def release(self, key: str, *, token: str, forget: bool = False) -> bool:
        if not forget:
            return self._update(key, token, "SET #st = :rel, #lu = :zero",
                                {":rel": _s(Status.RELEASED.value), ":zero": _n(0)}, "release")
        try:
            with _translated(self.table, "release (DeleteItem)"):
                self.client.delete_item(
                    TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)}, ConditionExpression=_MINE,
                    ExpressionAttributeNames={"#tk": "token", "#st": "status"},
                    ExpressionAttributeValues={":tk": _s(token), ":ip": _s(Status.IN_PROGRESS.value)})
        except _Conditional:
            return False
        return True

    def get(self, key: str, *, now: datetime | None = None) -> Record | None:
        item = self._item(key)
        if item is None:
            return None
        record = _record(item)
        return record if record.live(now or datetime.now(timezone.utc)) else None

    def delete(self, key: str) -> None:
        with _translated(self.table, "delete (DeleteItem)"):
            self.client.delete_item(TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)})

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"<DynamoDBStore {self.table}>"

    # -- helpers -----------------------------------------------------------------------
    def _update(self, key: str, token: str, expression: str, values: dict[str, Any], action: str) -> bool:
        names = _names(expression, _MINE)
        try:
            with _translated(self.table, f"{action} (UpdateItem)"):
                self.client.update_item(
                    TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)}, UpdateExpression=expression,
                    ConditionExpression=_MINE, ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":tk": _s(token), ":ip": _s(Status.IN_PROGRESS.value)})
        except _Conditional:
            return False
        return True

    def load(self, key: str, *, now: datetime | None = None) -> Document | None:
        item = self._item(key)
        return None if item is None else _loaded(item, now or datetime.now(timezone.utc))

    def save(self, key: str, value: str, *, version: int, expires_at: datetime,
             now: datetime | None = None) -> bool:
        now_n = _n(math.floor((now or datetime.now(timezone.utc)).timestamp()))
        item = {KEY_ATTRIBUTE: _s(key), "version": _n(version), "doc": _s(value),
                TTL_ATTRIBUTE: _n(math.ceil(expires_at.timestamp())), PARENT_ATTRIBUTE: _s(_group(key))}
        if version == 1:  # none there, or only a lapsed one
            condition, values = "attribute_not_exists(#id) OR #ex <= :now", {":now": now_n}
        else:
            condition, values = "#v = :prev AND #ex > :now", {":prev": _n(version - 1), ":now": now_n}
        names = {"#id": KEY_ATTRIBUTE, "#ex": TTL_ATTRIBUTE, "#v": "version"}
        try:
            with _translated(self.table, "save (PutItem)"):
                self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition,
                                     ExpressionAttributeNames={k: v for k, v in names.items() if k in condition},
                                     ExpressionAttributeValues=values)
        except _Conditional:
            return False
        return True

    def scan(self, prefix: str, *, now: datetime | None = None, limit: int = 1000) -> list[Document]:
        # The documents under a two-part path (``shop/flow/``: every flow's head) are one
        # Query of the sparse index on that path, in key order, then one BatchGetItem per
        # 100; a table made without the index, or another prefix, takes a Scan.
        if prefix.count("/") == 2 and prefix.endswith("/") and self._indexed is not False:
            found = self._query(prefix, now, limit)
            if found is not None:
                return found
        return self._scanned(prefix, now, limit)

    def _query(self, prefix: str, now: datetime | None, limit: int) -> list[Document] | None:
        """The live documents under ``prefix`` (``app/flow/``), through the index (None: the
        table has no such index)."""
        moment = now or datetime.now(timezone.utc)
        arguments: dict[str, Any] = {
            "TableName": self.table, "IndexName": PARENT_INDEX,
            "KeyConditionExpression": "#p = :p AND begins_with(#id, :prefix)",
            "ExpressionAttributeNames": {"#p": PARENT_ATTRIBUTE, "#id": KEY_ATTRIBUTE},
            "ExpressionAttributeValues": {":p": _s(prefix[:-1]), ":prefix": _s(prefix)}}
        found: list[Document] = []
        while len(found) < limit:
            try:
                answer = self.client.query(**arguments)
            except Exception as exc:
                if not (self._indexed is None and _missing_index(exc)):
                    with _translated(self.table, f"list documents (Query on {PARENT_INDEX})"):
                        raise
                log.warning("DynamoDB table %r has no index %r: listing flows scans the whole table; "
                            "add it (the Terraform module aws-sqs-lambda, or cloudqueue_aws.dynamodb."
                            "ensure_table)", self.table, PARENT_INDEX)
                self._indexed = False
                return None
            self._indexed = True
            keys = [item[KEY_ATTRIBUTE]["S"] for item in answer.get("Items", [])]
            loaded = self.load_many(keys, now=moment)
            found.extend(loaded[k] for k in keys if k in loaded)
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
            arguments["ExclusiveStartKey"] = start
        return found[:max(limit, 0)]

    def _scanned(self, prefix: str, now: datetime | None, limit: int) -> list[Document]:
        """``scan`` by a Scan filtered on the key prefix, a page at a time, until ``limit``
        documents are found (bounded: it reads the whole table at most once)."""
        moment = now or datetime.now(timezone.utc)
        found: list[Document] = []
        arguments: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "FilterExpression": "begins_with(#id, :prefix) AND attribute_exists(#v) AND #ex > :now",
            "ExpressionAttributeNames": {"#id": KEY_ATTRIBUTE, "#v": "version", "#ex": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":prefix": _s(prefix), ":now": _n(math.floor(moment.timestamp()))}}
        while len(found) < limit:
            with _translated(self.table, "scan (Scan)"):
                answer = self.client.scan(**arguments)
            items: list[dict[str, Any]] = [dict(item) for item in answer.get("Items", [])]
            for item in items:
                expires_at = _time(item.get(TTL_ATTRIBUTE)) or datetime.fromtimestamp(0, timezone.utc)
                if expires_at > moment:
                    found.append(Document(item[KEY_ATTRIBUTE]["S"], int(item["version"]["N"]), item["doc"]["S"],
                                          expires_at))
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
            arguments["ExclusiveStartKey"] = start
        found.sort(key=lambda d: d.key)
        return found[:max(limit, 0)]

    def load_many(self, keys: Sequence[str], *, now: datetime | None = None) -> dict[str, Document]:
        # BatchGetItem, 100 keys a call; keys DynamoDB leaves unprocessed (throttled) are
        # asked again, a bounded number of times
        moment = now or datetime.now(timezone.utc)
        found: dict[str, Document] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 100):
            request: dict[str, Any] = {self.table: {"Keys": [{KEY_ATTRIBUTE: _s(k)} for k in wanted[start:start + 100]],
                                                    "ConsistentRead": True}}
            for attempt in range(_BATCH_ATTEMPTS):
                with _translated(self.table, "load (BatchGetItem)"):
                    answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    document = _loaded(dict(item), moment)
                    if document is not None:
                        found[document.key] = document
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    break
                time.sleep(min(0.05 * 2 ** attempt, 1.0))
            else:
                raise BackendError(f"DynamoDB table {self.table!r}: BatchGetItem left keys unprocessed "
                                   f"{_BATCH_ATTEMPTS} times (throttled); the delivery is retried")
        return found

    def add_member(self, key: str, member: int, *, expires_at: datetime, now: datetime | None = None) -> int:
        # ADD to a number set is atomic and idempotent; ALL_NEW returns the set also when
        # the member was there already (UPDATED_NEW may leave an unchanged attribute out)
        with _translated(self.table, "add to a set (UpdateItem)"):
            answer = self.client.update_item(
                TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)},
                UpdateExpression="ADD #m :m SET #ex = if_not_exists(#ex, :ex)",
                ExpressionAttributeNames={"#m": _MEMBERS, "#ex": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":m": {"NS": [str(member)]},
                                           ":ex": _n(math.ceil(expires_at.timestamp()))},
                ReturnValues="ALL_NEW")
        return len(answer["Attributes"][_MEMBERS]["NS"])

    def members(self, key: str, *, now: datetime | None = None) -> frozenset[int]:
        item = self._item(key)
        if item is None or _MEMBERS not in item:
            return frozenset()
        expires_at = _time(item.get(TTL_ATTRIBUTE)) or datetime.fromtimestamp(0, timezone.utc)
        if expires_at <= (now or datetime.now(timezone.utc)):
            return frozenset()
        return frozenset(int(n) for n in item[_MEMBERS]["NS"])

    def _item(self, key: str) -> dict[str, Any] | None:
        with _translated(self.table, "read (GetItem)"):
            answer = self.client.get_item(TableName=self.table, Key={KEY_ATTRIBUTE: _s(key)}, ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item


def _group(key: str) -> str:
    """The index's partition key of a document: its key up to the second "/"."""
    return "/".join(key.split("/", 2)[:2])


def _missing_index(exc: BaseException) -> bool:
    """A Query refused because the table has no such index (DynamoDB says so with a
    ValidationException; some emulators with ResourceNotFoundException)."""
    if error_code(exc) not in ("ValidationException", "ResourceNotFoundException"):
        return False
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
    return "index" in message.lower()


def _loaded(item: dict[str, Any], now: datetime) -> Document | None:
    """The live document an item holds, or None (a record, or lapsed: DynamoDB's TTL deletes
    items within days, not at once)."""
    if "version" not in item:
        return None
    expires_at = _time(item.get(TTL_ATTRIBUTE)) or datetime.fromtimestamp(0, timezone.utc)
    if expires_at <= now:
        return None
    return Document(item[KEY_ATTRIBUTE]["S"], int(item["version"]["N"]), item["doc"]["S"], expires_at)


class _Conditional(Exception):
    """A conditional write was refused; ``item`` is the record as it stood, when returned."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("condition not met")
        self.item = item


@contextmanager
def _translated(table: str, action: str) -> Iterator[None]:
    """Run a DynamoDB call: a refused condition becomes ``_Conditional``, other botocore
    errors cloudqueue errors (a missing table names the fix)."""
    try:
        yield
    except (BackendError, ConfigurationError):
        raise
    except Exception as exc:
        code = error_code(exc)
        if code == _CONDITIONAL:
            raise _Conditional(getattr(exc, "response", {}).get("Item")) from exc
        if code == "ResourceNotFoundException":
            raise ConfigurationError(
                f"DynamoDB table {table!r} does not exist (store {action}); create it with the Terraform "
                "module (store_table = true) or cloudqueue_aws.dynamodb.ensure_table, or fix the store URL"
            ) from exc
        mapped = translate(exc, action, service="DynamoDB", fix="dynamodb:GetItem, BatchGetItem, PutItem, UpdateItem, "
                           f"DeleteItem, and Query on its index {PARENT_INDEX} or Scan (listing flows), "
                           f"on table {table}")
        if mapped is exc:
            raise
        raise mapped from exc


def _names(*expressions: str) -> dict[str, str]:
    """The attribute names the expressions use (DynamoDB refuses unused ones)."""
    return {name: attr for name, attr in _NAMES.items() if any(name in e for e in expressions)}


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _n(number: float) -> dict[str, str]:
    return {"N": repr(number) if isinstance(number, float) else str(number)}


def _time(attr: dict[str, str] | None) -> datetime | None:
    if attr is None:
        return None
    seconds = float(attr["N"])
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds > 0 else None


def _record(item: dict[str, Any]) -> Record:
    value = item.get("value")
    return Record(
        key=item[KEY_ATTRIBUTE]["S"], status=Status(item["status"]["S"]),
        token=item.get("token", {}).get("S"), runs=int(item.get("runs", {"N": "0"})["N"]),
        lease_until=_time(item.get("lease_until")),
        expires_at=_time(item.get(TTL_ATTRIBUTE)) or datetime.fromtimestamp(0, timezone.utc),
        job_type=item.get("job_type", {}).get("S") or None, job_id=item.get("job_id", {}).get("S") or None,
        value=value["S"] if value else None, completed_at=_time(item.get("completed_at")))


def _item(record: Record) -> dict[str, Any]:
    item: dict[str, Any] = {
        KEY_ATTRIBUTE: _s(record.key), "status": _s(record.status.value), "token": _s(record.token or ""),
        "runs": _n(record.runs), "lease_until": _n(record.lease_until.timestamp() if record.lease_until else 0),
        TTL_ATTRIBUTE: _n(math.ceil(record.expires_at.timestamp())), "job_type": _s(record.job_type or ""),
        "job_id": _s(record.job_id or "")}
    if record.value is not None:
        item["value"] = _s(record.value)
    return item


def make_client(region: str | None = None, endpoint_url: str | None = None) -> DynamoDBClient:
    """A boto3 DynamoDB client (boto3 is imported here)."""
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError(f"the dynamodb store needs boto3: {_INSTALL_HINT}") from exc
    from botocore.exceptions import NoRegionError

    try:
        client: DynamoDBClient = boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url)
    except NoRegionError as exc:
        raise ConfigurationError("the dynamodb store needs a region and none is set: write "
                                 "dynamodb://TABLE?region=eu-west-1, or set AWS_DEFAULT_REGION") from exc
    return client


_ATTRIBUTES: Any = [{"AttributeName": KEY_ATTRIBUTE, "AttributeType": "S"},
                   {"AttributeName": PARENT_ATTRIBUTE, "AttributeType": "S"}]
_INDEX: Any = {"IndexName": PARENT_INDEX, "Projection": {"ProjectionType": "KEYS_ONLY"},
               "KeySchema": [{"AttributeName": PARENT_ATTRIBUTE, "KeyType": "HASH"},
                             {"AttributeName": KEY_ATTRIBUTE, "KeyType": "RANGE"}]}


def ensure_table(name: str, *, client: DynamoDBClient) -> str:
    """Create the store's table (on demand capacity, TTL on ``expires_at``, the index
    ``by_parent`` that lists documents) unless it exists, and add the index to one made
    without it; return its ARN. For local work and tests: production tables come from
    Terraform."""
    with _translated(name, "create table"):
        try:
            table = client.describe_table(TableName=name)["Table"]
            arn = table["TableArn"]
            if not any(i["IndexName"] == PARENT_INDEX for i in table.get("GlobalSecondaryIndexes", [])):
                client.update_table(TableName=name, AttributeDefinitions=_ATTRIBUTES,
                                    GlobalSecondaryIndexUpdates=[{"Create": _INDEX}])
        except client.exceptions.ResourceNotFoundException:
            arn = client.create_table(
                TableName=name, BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": KEY_ATTRIBUTE, "KeyType": "HASH"}],
                AttributeDefinitions=_ATTRIBUTES, GlobalSecondaryIndexes=[_INDEX],
            )["TableDescription"]["TableArn"]
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
    return arn


def from_url(url: str, *, client: DynamoDBClient | None = None) -> DynamoDBStore:
    """Open ``dynamodb://TABLE[?region=...&endpoint_url=...]``; no SDK call yet."""
    parts = urlsplit(url)
    if parts.scheme != "dynamodb":
        raise ConfigurationError(f"not a dynamodb:// URL: {url!r}")
    table = parts.netloc + parts.path.rstrip("/")
    if not table or "/" in table:
        raise ConfigurationError(f"store URL {url!r}: write dynamodb://TABLE?region=eu-west-1")
    options = parse_options("dynamodb", parts.query, OPTIONS)
    return DynamoDBStore(table, client=client, region=options.get("region") or None,
                         endpoint_url=options.get("endpoint_url") or None)
