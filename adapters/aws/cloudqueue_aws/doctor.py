"""``cloudqueue doctor`` for ``sqs://`` queues: the queue, its DLQ, and the Lambda that reads it.

Looked up by the core's doctor for the ``sqs`` scheme (``cloudqueue.doctor``); boto3 is
imported when it runs. What is read: the queue's and the dead-letter queue's attributes
(SQS), the event source mappings on the queue and their functions (Lambda), and the
functions' execution roles (IAM, inline and attached policies). The checks:

- redrive policy: present, and its ``maxReceiveCount`` keeps headroom over the jobs'
  attempts (``cloudqueue.retry.max_receives_for``);
- the dead-letter queue keeps messages at least as long as the queue;
- encryption (SSE-SQS or KMS) on both queues; long polling on the queue;
- per event source mapping: ``ReportBatchItemFailures``; a visibility timeout of at least
  six function timeouts plus the batching window; a maximum concurrency within the
  function's reserved concurrency; no filter criteria (Lambda deletes what they drop);
  enabled;
- the function's role may send to the DLQ (the shim's dead letters) and, on a standard
  queue, to the queue itself (delays over 15 minutes hop through it).

``check_store`` checks a ``dynamodb://`` idempotency store: the table exists and is
active, its key is the string ``id``, TTL is on ``expires_at``; a note for provisioned
capacity.

``check_payload_store`` checks an ``s3://`` claim-check store: the bucket exists; a
lifecycle rule on the prefix expires objects, and no sooner than a message can still
point at one (the longest retention of the app's SQS queues + their dead-letter queue's
retention, whole days, + 1, as terraform/aws-sqs-lambda computes it; a delay adds more);
the role of each function reading the app's queues may get and delete objects under the
prefix.

IAM is evaluated from the policy documents (Allow/Deny, actions and resources with
wildcards); conditions are not evaluated, so a conditional Allow counts as allowed.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from cloudqueue import ConfigurationError
from cloudqueue.doctor import Finding, PayloadStoreUnderCheck, QueueUnderCheck, StoreUnderCheck
from cloudqueue.retry import receive_headroom

from ._address import parse_arn, parse_url
from ._errors import translated
from .backend import SQSBackend

__all__ = ["allows", "check", "check_payload_store", "check_store"]

#: SQS's bound on maxReceiveCount
_MAX_RECEIVE_COUNT = 1000
#: AWS asks for a visibility timeout of at least six function timeouts
_TIMEOUTS_PER_VISIBILITY = 6


def check(target: QueueUnderCheck) -> list[Finding]:
    """Every finding for one ``sqs://`` queue (see the module docstring)."""
    backend = target.backend
    if not isinstance(backend, SQSBackend):
        return [target.note("checks", f"{backend!r} is not an SQS backend", "nothing checked")]
    sqs = backend.client
    with translated(f"GetQueueAttributes({backend.name})"):
        answer = sqs.get_queue_attributes(QueueUrl=backend.queue_url, AttributeNames=["All"])
    queue: Mapping[str, str] = {str(key): value for key, value in answer["Attributes"].items()}
    findings: list[Finding] = []
    dlq_arn = _redrive(target, queue, findings)
    dlq: Mapping[str, str] | None = None
    if dlq_arn is not None:
        dlq = _dead_letter_queue(target, sqs, dlq_arn, queue, findings)
    for name, attributes in (("queue", queue), ("dead-letter queue", dlq)):
        if attributes is not None and not _encrypted(attributes):
            findings.append(target.error(
                "encryption", f"the {name} is not encrypted",
                "SSE-SQS (SqsManagedSseEnabled) or a KMS key; terraform/aws-sqs-lambda always sets one",
                "job payloads are stored in clear"))
    if int(queue.get("ReceiveMessageWaitTimeSeconds", "0")) == 0:
        findings.append(target.warning(
            "long polling", "ReceiveMessageWaitTimeSeconds = 0",
            "receive_wait_time_seconds = 20 (terraform/aws-sqs-lambda's default)",
            "receivers that do not ask for long polling themselves make empty, billed receives"))
    findings += _consumers(target, backend, queue, dlq_arn)
    return findings


# -- the queue and its dead-letter queue ------------------------------------------------------

def _redrive(target: QueueUnderCheck, queue: Mapping[str, str], findings: list[Finding]) -> str | None:
    """Check the redrive policy; return the dead-letter queue's ARN."""
    if not queue.get("RedrivePolicy"):
        findings.append(target.error(
            "redrive policy", "no RedrivePolicy",
            "give the queue a dead-letter queue (terraform/aws-sqs-lambda, or cloudqueue_aws.ensure_queue)",
            "a message no consumer settles comes back until it expires, and the shim has no "
            "dead-letter queue for poison messages and cq.Permanent failures"))
        return None
    policy = json.loads(queue["RedrivePolicy"])
    count = int(policy.get("maxReceiveCount", 0))
    attempts = target.max_attempts
    wanted = min(target.max_receives, _MAX_RECEIVE_COUNT)
    if count < attempts:
        findings.append(target.error(
            "max receive count", f"maxReceiveCount {count}, below the jobs' {attempts} attempts",
            f"max_receive_count = {wanted} (cloudqueue terraform-vars ... aws-sqs-lambda)",
            f"SQS dead-letters a job after {count} receives, before its {attempts} attempts have run, "
            "with no reason"))
    elif count < wanted:
        findings.append(target.error(
            "max receive count", f"maxReceiveCount {count}: {count - attempts} over the jobs' {attempts} "
            "attempts",
            f"max_receive_count = {wanted}: {attempts} attempts + {receive_headroom(attempts)} headroom "
            "(cloudqueue terraform-vars ... aws-sqs-lambda)",
            "receives that never start a job (FIFO hold-backs, deadline give-backs, timed-out "
            "batches) count too, so SQS dead-letters jobs before their attempts ran, with no reason"))
    arn = policy.get("deadLetterTargetArn")
    return str(arn) if arn else None


def _dead_letter_queue(target: QueueUnderCheck, sqs: Any, dlq_arn: str, queue: Mapping[str, str],
                       findings: list[Finding]) -> Mapping[str, str] | None:
    arn = parse_arn(dlq_arn)
    try:
        with translated(f"GetQueueUrl({arn.name})"):
            url = sqs.get_queue_url(QueueName=arn.name, QueueOwnerAWSAccountId=arn.account)["QueueUrl"]
        with translated(f"GetQueueAttributes({arn.name})"):
            dlq: Mapping[str, str] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    except Exception as exc:  # any cloudqueue error: the DLQ cannot be used
        findings.append(target.error(
            "dead-letter queue", f"{dlq_arn} cannot be read: {exc}",
            "create the dead-letter queue the RedrivePolicy names (terraform/aws-sqs-lambda makes both)",
            "SQS and the shim have nowhere to put dead letters"))
        return None
    source, kept = int(queue.get("MessageRetentionPeriod", 345600)), int(dlq.get("MessageRetentionPeriod", 345600))
    if kept < source:
        findings.append(target.error(
            "DLQ retention", f"dead-letter queue {kept} s, queue {source} s",
            f"dlq_message_retention_seconds >= {source} (default and maximum 1209600)",
            "a message keeps its enqueue time when it moves, so dead letters are deleted early"))
    return dlq


def _encrypted(attributes: Mapping[str, str]) -> bool:
    return attributes.get("SqsManagedSseEnabled") == "true" or bool(attributes.get("KmsMasterKeyId"))


# -- the consuming function ------------------------------------------------------------------------

def _clients(target: QueueUnderCheck, backend: SQSBackend) -> tuple[Any, Any]:
    """Lambda and IAM clients in the SQS client's region, at its endpoint when that is not AWS's."""
    import boto3

    sqs = backend.client
    endpoint = parse_url(target.url).endpoint_url if target.url else None
    if endpoint is None and not str(sqs.meta.endpoint_url).endswith(".amazonaws.com"):
        endpoint = sqs.meta.endpoint_url
    region = sqs.meta.region_name
    return (boto3.client("lambda", region_name=region, endpoint_url=endpoint),
            boto3.client("iam", region_name=region, endpoint_url=endpoint))


def _consumers(target: QueueUnderCheck, backend: SQSBackend, queue: Mapping[str, str],
               dlq_arn: str | None) -> list[Finding]:
    lambda_, iam = _clients(target, backend)
    queue_arn = queue["QueueArn"]
    with translated(f"ListEventSourceMappings({backend.name})"):
        mappings = [m for page in lambda_.get_paginator("list_event_source_mappings").paginate(
            EventSourceArn=queue_arn) for m in page["EventSourceMappings"]]
    if not mappings:
        return [target.note("event source mapping", "no Lambda function reads this queue",
                            "none, if `cloudqueue worker` consumes it; the mapping checks were skipped")]
    findings: list[Finding] = []
    for mapping in mappings:
        findings += _mapping(target, lambda_, iam, mapping, queue, dlq_arn, backend.fifo)
    return findings


def _mapping(target: QueueUnderCheck, lambda_: Any, iam: Any, mapping: Mapping[str, Any],
             queue: Mapping[str, str], dlq_arn: str | None, fifo: bool) -> list[Finding]:
    findings: list[Finding] = []
    function_arn = str(mapping["FunctionArn"])
    function = function_arn.split(":function:", 1)[-1]
    if "ReportBatchItemFailures" not in (mapping.get("FunctionResponseTypes") or []):
        findings.append(target.error(
            "batch item failures", f"mapping to {function} without ReportBatchItemFailures",
            'function_response_types = ["ReportBatchItemFailures"] (terraform/aws-sqs-lambda sets it)',
            "Lambda ignores the shim's batchItemFailures and deletes every record of a batch that "
            "returned, the failed ones included: their retries are lost"))
    if mapping.get("State") in ("Disabled", "Disabling"):
        findings.append(target.warning(
            "mapping state", f"mapping to {function} {mapping['State'].lower()}",
            "mapping_enabled = true, or consume with `cloudqueue worker`",
            "nothing runs the jobs; they wait until their retention ends"))
    if (mapping.get("FilterCriteria") or {}).get("Filters"):
        findings.append(target.warning(
            "filter criteria", f"mapping to {function} filters records",
            "remove filter_criteria, or make sure no job's messages can be filtered out",
            "Lambda deletes every message that matches no pattern, without running it and without "
            "a dead letter"))
    with translated(f"GetFunctionConfiguration({function})"):
        config = lambda_.get_function_configuration(FunctionName=function_arn)
    timeout = int(config.get("Timeout", 3))
    window = int(mapping.get("MaximumBatchingWindowInSeconds") or 0)
    visibility = int(queue.get("VisibilityTimeout", 30))
    if visibility < _TIMEOUTS_PER_VISIBILITY * timeout:
        findings.append(target.error(
            "visibility timeout", f"VisibilityTimeout {visibility} s, function timeout {timeout} s",
            f"visibility_timeout_seconds >= {_TIMEOUTS_PER_VISIBILITY * timeout + window} "
            "(six function timeouts, plus the batching window)",
            "a batch Lambda retries after a throttle comes back while it still runs: two runs at once"))
    elif visibility < _TIMEOUTS_PER_VISIBILITY * timeout + window:
        findings.append(target.error(
            "batch window", f"VisibilityTimeout {visibility} s, 6 x {timeout} s + {window} s window",
            f"visibility_timeout_seconds >= {_TIMEOUTS_PER_VISIBILITY * timeout + window}, "
            "or a shorter maximum_batching_window_in_seconds",
            "records are hidden while the window gathers them, so the window eats into the time "
            "six function timeouts need"))
    findings += _concurrency(target, lambda_, function, mapping)
    findings += _grants(target, iam, str(config.get("Role", "")), function, queue["QueueArn"], dlq_arn, fifo)
    return findings


def _concurrency(target: QueueUnderCheck, lambda_: Any, function: str,
                 mapping: Mapping[str, Any]) -> list[Finding]:
    with translated(f"GetFunctionConcurrency({function})"):
        reserved = lambda_.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions")
    maximum = (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if reserved is None:
        return []
    if reserved == 0:
        return [target.error("maximum concurrency", f"{function}: reserved concurrency 0",
                             "give the function reserved concurrency above the mapping's maximum concurrency",
                             "the function never runs; every batch is throttled back to the queue")]
    if maximum is None or int(maximum) > int(reserved):
        found = "no maximum concurrency" if maximum is None else f"maximum concurrency {maximum}"
        return [target.error(
            "maximum concurrency", f"mapping {found}, {function} {reserved} reserved",
            f"maximum_concurrency <= {reserved} (and >= 2), or more reserved concurrency",
            "throttled batches go back to the queue and count as receives, so jobs are "
            "dead-lettered without running")]
    return []


def _grants(target: QueueUnderCheck, iam: Any, role_arn: str, function: str, queue_arn: str,
            dlq_arn: str | None, fifo: bool) -> list[Finding]:
    if ":role/" not in role_arn:
        return [target.warning("function role", f"{function}: no readable role ({role_arn!r})",
                               "give the function an IAM role; the grant checks were skipped")]
    role = role_arn.rsplit("/", 1)[-1]
    documents = list(_role_documents(iam, role))
    findings: list[Finding] = []
    if dlq_arn is not None and not allows(documents, "sqs:SendMessage", dlq_arn):
        findings.append(target.error(
            "dead-letter send", f"role {role}: no sqs:SendMessage on the DLQ",
            "grant sqs:SendMessage on the DLQ (terraform/aws-sqs-lambda's SendDeadLetters statement)",
            "the shim cannot dead-letter poison messages and cq.Permanent failures; they come back "
            "until SQS moves them, without a reason"))
    if not fifo and not allows(documents, "sqs:SendMessage", queue_arn):
        findings.append(target.error(
            "send to own queue", f"role {role}: no sqs:SendMessage on this queue",
            "allow_send_to_queue = true (cloudqueue terraform-vars prints it for standard queues)",
            "a job delayed over 15 minutes hops through the queue; the send fails, the record keeps "
            "coming back and SQS dead-letters it with no reason: the job never runs"))
    return findings


def _role_documents(iam: Any, role: str) -> Iterator[Mapping[str, Any]]:
    """The role's inline and attached policy documents."""
    with translated(f"ListRolePolicies({role})"):
        names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=role)
                 for n in page["PolicyNames"]]
    for name in names:
        with translated(f"GetRolePolicy({role}, {name})"):
            yield _document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
    with translated(f"ListAttachedRolePolicies({role})"):
        attached = [p["PolicyArn"] for page in iam.get_paginator("list_attached_role_policies").paginate(
            RoleName=role) for p in page["AttachedPolicies"]]
    for arn in attached:
        with translated(f"GetPolicy({arn})"):
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            yield _document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])


def _document(document: Any) -> Mapping[str, Any]:
    if isinstance(document, str):  # IAM's wire form is URL-encoded JSON; boto3 usually decodes it
        document = json.loads(unquote(document))
    return dict(document)


def allows(documents: Iterable[Mapping[str, Any]], action: str, resource: str) -> bool:
    """Whether the policy documents allow ``action`` on ``resource`` (an explicit Deny wins).

    Actions and resources match with IAM's wildcards (``*``, ``?``; actions case-insensitively);
    ``NotAction`` / ``NotResource`` are honoured; conditions are not evaluated.
    """
    allowed = False
    for document in documents:
        statements = document.get("Statement", [])
        for statement in [statements] if isinstance(statements, Mapping) else statements:
            if not (_matches(statement, "Action", action, fold=True)
                    and _matches(statement, "Resource", resource, fold=False)):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _matches(statement: Mapping[str, Any], key: str, value: str, *, fold: bool) -> bool:
    def any_match(patterns: Any) -> bool:
        items = [patterns] if isinstance(patterns, str) else list(patterns or [])
        if fold:
            return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in items)
        return any(fnmatch.fnmatchcase(value, p) for p in items)

    if key in statement:
        return any_match(statement[key])
    if f"Not{key}" in statement:
        return not any_match(statement[f"Not{key}"])
    return False


# -- the idempotency store --------------------------------------------------------------------

def check_store(target: StoreUnderCheck) -> list[Finding]:
    """The ``dynamodb://`` store's table: it exists and is active, its key is the string
    ``id``, TTL deletes records by ``expires_at``, and the index ``by_parent`` lists flows."""
    from .dynamodb import KEY_ATTRIBUTE, PARENT_INDEX, TTL_ATTRIBUTE, DynamoDBStore, _translated

    store = target.store
    if not isinstance(store, DynamoDBStore):
        return [target.note("checks", f"{store!r} is not a DynamoDB store", "nothing checked")]
    client = store.client
    findings: list[Finding] = []
    fix = f"store_table = true in terraform/aws-sqs-lambda (table {store.table!r})"
    try:
        with _translated(store.table, "DescribeTable"):
            table = client.describe_table(TableName=store.table)["Table"]
    except ConfigurationError:
        return [target.error("table", f"no table {store.table!r}", fix,
                             "every guarded job fails before it runs, and ends in dead letters")]
    if table.get("TableStatus") not in ("ACTIVE", "UPDATING"):
        findings.append(target.error("table", f"table status {table.get('TableStatus')}", "wait for it, or "
                                     "recreate it", "claims fail while the table is not active"))
    key = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    if key != [(KEY_ATTRIBUTE, "HASH")] or types.get(KEY_ATTRIBUTE) != "S":
        findings.append(target.error(
            "key schema", f"key {key} ({types})", f"a table whose only key is the string {KEY_ATTRIBUTE!r}: {fix}",
            "the store's reads and conditional writes name that key; any other schema refuses them"))
    with _translated(store.table, "DescribeTimeToLive"):
        ttl = client.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
    if status not in ("ENABLED", "ENABLING") or attribute != TTL_ATTRIBUTE:
        findings.append(target.error(
            "ttl", f"TTL {status or 'DISABLED'}" + (f" on {attribute!r}" if attribute else ""),
            f"TTL on {TTL_ATTRIBUTE!r} ({fix} sets it)",
            "lapsed records are never deleted: the table grows by one item per guarded job for good"))
    indexes = [i.get("IndexName") for i in table.get("GlobalSecondaryIndexes", [])]
    if PARENT_INDEX not in indexes:
        findings.append(target.warning(
            "index", f"no index {PARENT_INDEX!r}", f"{fix} (or cloudqueue_aws.dynamodb.ensure_table) adds it",
            "listing flows (cloudqueue flows list, stats, the dashboard) scans the whole table"))
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    if billing != "PAY_PER_REQUEST":
        findings.append(target.note(
            "capacity", "provisioned capacity", "PAY_PER_REQUEST (the module's choice), or capacity for two "
            "writes per guarded job", "a throttled claim fails the attempt; the job is retried"))
    return findings


# -- the claim check's bucket -----------------------------------------------------------------

_DAY = 86400
#: SQS's default retention, when an attribute is not there
_DEFAULT_RETENTION = 345600


def check_payload_store(target: PayloadStoreUnderCheck) -> list[Finding]:
    """The ``s3://`` payload store's bucket, its lifecycle rule on the prefix, and the
    consuming functions' grants (see the module docstring)."""
    from .s3 import S3PayloadStore, _translated

    store = target.store
    if not isinstance(store, S3PayloadStore):
        return [target.note("checks", f"{store!r} is not an S3 payload store", "nothing checked")]
    s3, bucket, prefix = store.client, store.bucket, store.prefix
    fix = "payload_bucket = {} in terraform/aws-sqs-lambda (cloudqueue terraform-vars prints it)"
    try:
        with _translated(f"HeadBucket({bucket})", missing_ok=True) as missing:
            s3.head_bucket(Bucket=bucket)
    except ConfigurationError:
        missing.value = True
    if missing:
        return [target.error("bucket", f"no bucket {bucket!r}", fix,
                             "every enqueue of a large payload fails (the producer cannot upload it)")]
    findings: list[Finding] = []
    retention = _retention(target)
    findings += _lifecycle(target, s3, bucket, prefix, retention, fix)
    findings += _payload_grants(target, bucket, prefix)
    return findings


def _retention(target: PayloadStoreUnderCheck) -> tuple[int, int] | None:
    """(the longest queue retention, the longest DLQ retention) in seconds over the app's
    SQS queues; None when none is an SQS queue."""
    longest: tuple[int, int] | None = None
    for queue in target.queues:
        backend = queue.backend
        if not isinstance(backend, SQSBackend):
            continue
        sqs = backend.client
        with translated(f"GetQueueAttributes({backend.name})"):
            answer = sqs.get_queue_attributes(QueueUrl=backend.queue_url, AttributeNames=["All"])
        attributes: Mapping[str, str] = {str(key): value for key, value in answer["Attributes"].items()}
        kept = int(attributes.get("MessageRetentionPeriod", _DEFAULT_RETENTION))
        dead = 0
        dlq_arn = _dlq_arn(attributes)
        if dlq_arn is not None:
            arn = parse_arn(dlq_arn)
            try:
                with translated(f"GetQueueAttributes({arn.name})"):
                    url = sqs.get_queue_url(QueueName=arn.name, QueueOwnerAWSAccountId=arn.account)["QueueUrl"]
                    dead = int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])[
                        "Attributes"].get("MessageRetentionPeriod", _DEFAULT_RETENTION))
            except Exception:  # the queue's own checks report an unreadable DLQ
                dead = 0
        longest = (kept, dead) if longest is None else (max(longest[0], kept), max(longest[1], dead))
    return longest


def _dlq_arn(attributes: Mapping[str, str]) -> str | None:
    policy = attributes.get("RedrivePolicy")
    if not policy:
        return None
    arn = json.loads(policy).get("deadLetterTargetArn")
    return str(arn) if arn else None


def _lifecycle(target: PayloadStoreUnderCheck, s3: Any, bucket: str, prefix: str,
               retention: tuple[int, int] | None, fix: str) -> list[Finding]:
    from ._errors import error_code
    from .s3 import _translated

    action = f"GetBucketLifecycleConfiguration({bucket})"
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except Exception as exc:
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            with _translated(action):
                raise
        rules = []
    covering = [rule for rule in rules if rule.get("Status") == "Enabled" and _covers(rule, prefix)
                and (rule.get("Expiration") or {}).get("Days")]
    where = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
    if not covering:
        return [target.warning(
            "lifecycle rule", f"no enabled rule expires objects under {where}",
            f"a lifecycle rule on the prefix ({fix} writes one)",
            "what the consumers do not delete (a send that failed after the upload, a failed delete, "
            "dead letters never redriven) stays in the bucket for good")]
    days = min(int(rule["Expiration"]["Days"]) for rule in covering)
    if retention is None:
        return [target.note("lifecycle rule", f"objects under {where} expire after {days} days",
                            "none; no SQS queue of the app to compare it with")]
    kept, dead = retention
    needed = math.ceil((kept + dead) / _DAY) + 1
    if days < needed:
        return [target.error(
            "lifecycle rule", f"objects under {where} expire after {days} days; a message can point at "
            f"one for {kept // _DAY} d {kept % _DAY // 3600} h in the queue + {dead // _DAY} d "
            f"{dead % _DAY // 3600} h in the dead-letter queue",
            f"expiration of at least {needed} days, plus the longest delay= / at= the producers use "
            "(payload_bucket.max_delay_days; the module computes it)",
            "a retried, delayed or dead-lettered message whose object the rule deleted is dead-lettered "
            "as missing, and its redrive cannot run")]
    return []


def _covers(rule: Mapping[str, Any], prefix: str) -> bool:
    """Whether a lifecycle rule applies to every object under ``prefix``."""
    rule_filter = rule.get("Filter")
    if rule_filter is None:
        wanted = rule.get("Prefix", "")
    elif "Prefix" in rule_filter:
        wanted = rule_filter["Prefix"]
    elif not rule_filter:
        wanted = ""
    else:  # tags, sizes or And: not every object
        return False
    return (prefix + "/").startswith(str(wanted))


def _payload_grants(target: PayloadStoreUnderCheck, bucket: str, prefix: str) -> list[Finding]:
    """Each function that reads an SQS queue of the app may get and delete under the prefix."""
    findings: list[Finding] = []
    resource = f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}job-id/sha256"
    seen: set[str] = set()
    for queue in target.queues:
        backend = queue.backend
        if not isinstance(backend, SQSBackend):
            continue
        lambda_, iam = _clients(queue, backend)
        with translated(f"GetQueueAttributes({backend.name})"):
            arn = backend.client.get_queue_attributes(QueueUrl=backend.queue_url,
                                                      AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        with translated(f"ListEventSourceMappings({backend.name})"):
            mappings = [m for page in lambda_.get_paginator("list_event_source_mappings").paginate(
                EventSourceArn=arn) for m in page["EventSourceMappings"]]
        for mapping in mappings:
            function_arn = str(mapping["FunctionArn"])
            if function_arn in seen:
                continue
            seen.add(function_arn)
            function = function_arn.split(":function:", 1)[-1]
            with translated(f"GetFunctionConfiguration({function})"):
                role_arn = str(lambda_.get_function_configuration(FunctionName=function_arn).get("Role", ""))
            if ":role/" not in role_arn:
                continue  # the queue's own checks report it
            role = role_arn.rsplit("/", 1)[-1]
            documents = list(_role_documents(iam, role))
            denied = [action for action in ("s3:GetObject", "s3:DeleteObject")
                      if not allows(documents, action, resource)]
            if denied:
                findings.append(target.error(
                    "function grants", f"role {role} ({function}): no {' or '.join(denied)} on "
                    f"s3://{bucket}/{prefix}/*",
                    "grant s3:GetObject and s3:DeleteObject on the prefix (terraform/aws-sqs-lambda's "
                    "ReadPayloads statement, with payload_bucket set)",
                    "the function cannot fetch large payloads (every such job fails until it is dead-"
                    "lettered as exhausted)" if "s3:GetObject" in denied else
                    "objects of finished jobs are never deleted; only the lifecycle rule removes them"))
    return findings
