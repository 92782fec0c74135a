"""``cloudqueue doctor`` for ``cloudtasks://`` and ``pubsub://`` queues.

Looked up by the core's doctor for those schemes (``cloudqueue.doctor``); the Google
clients are the backend's own, made when the checks run.

Cloud Tasks (the queue, read with GetQueue):

- state: the queue runs;
- retry config: ``max_attempts`` at least the jobs' attempts (or unlimited, and then no
  ``max_retry_duration`` that could drop a task first); backoff as the jobs' (what
  ``cloudqueue terraform-vars ... gcp-cloud-tasks`` prints);
- rate limits: dispatches are not throttled to nothing;
- OIDC target: the queue pins every task's URL (``uri_override``, enforced ALWAYS) to the
  app's target, and its OIDC token to the app's invoker account and audience.

Pub/Sub (the subscription named in the URL, read with GetSubscription):

- dead-letter policy: present (Pub/Sub counts ``deliveryAttempt`` only with one), with
  ``max_delivery_attempts`` keeping headroom over the jobs' attempts;
- retry policy: present, with the jobs' backoff (what terraform-vars prints);
- ack deadline: at least three worker heartbeats for a pull subscription, at least the
  function's timeout for a push one;
- push endpoint auth: https, with an OIDC token for the account and audience the shim checks;
- message ordering on when a job has an ordering key.

Firestore idempotency store (``check_store``): a document read works, and the collection
has an active TTL policy on ``expires_at``.

Cloud Storage payload store (``check_payload_store``, ``gs://``): the bucket exists, and an
enabled Delete rule on the prefix waits no less than a message can still point at an
object, as the modules compute it: a Pub/Sub subscription's retention + its dead-letter
topic's subscriptions' (Cloud Tasks: 31 days, the longest a task lives, + the dead-letter
subscription's), whole days, + 1. The grants (IAM conditions on the prefix) are not read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudqueue.doctor import Finding, PayloadStoreUnderCheck, QueueUnderCheck, StoreUnderCheck
from cloudqueue.retry import receive_headroom

from ._common import DEFAULT_TIMEOUT, translated
from .pubsub import PubSubBackend
from .tasks import CloudTasksBackend

_TIMEOUT = DEFAULT_TIMEOUT.total_seconds()

__all__ = ["check_cloud_tasks", "check_payload_store", "check_pubsub", "check_store", "ttl_findings"]

#: Pub/Sub's bound on max_delivery_attempts
_MAX_DELIVERY_ATTEMPTS = 100
#: a worker's heartbeat beats at least this many times per ack deadline
_BEATS_PER_DEADLINE = 3


def _seconds(value: timedelta | float | int) -> str:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return f"{seconds:g} s"


# -- Cloud Tasks ----------------------------------------------------------------------------------

def check_cloud_tasks(target: QueueUnderCheck) -> list[Finding]:
    """Every finding for one ``cloudtasks://`` queue (see the module docstring)."""
    backend = target.backend
    if not isinstance(backend, CloudTasksBackend):
        return [target.note("checks", f"{backend!r} is not a Cloud Tasks backend", "nothing checked")]
    from google.cloud import tasks_v2

    with translated(f"reading queue {backend.queue_path}"):
        queue = backend.client.get_queue(name=backend.queue_path, timeout=_TIMEOUT)
    findings: list[Finding] = []
    if queue.state != tasks_v2.Queue.State.RUNNING:
        findings.append(target.error(
            "queue state", f"queue {queue.state.name.lower()}",
            "resume the queue (gcloud tasks queues resume)", "no task is dispatched: no job runs"))
    findings += _retry_config(target, queue.retry_config)
    limits = queue.rate_limits
    if "rate_limits" in queue and (limits.max_dispatches_per_second <= 0 or limits.max_concurrent_dispatches <= 0):
        findings.append(target.error(
            "rate limits", f"{limits.max_dispatches_per_second:g}/s, {limits.max_concurrent_dispatches} at once",
            "max_dispatches_per_second and max_concurrent_dispatches above 0", "no task is dispatched"))
    findings += _pinned_target(target, backend, queue)
    return findings


def _retry_config(target: QueueUnderCheck, retry: Any) -> list[Finding]:
    findings: list[Finding] = []
    attempts = target.max_attempts
    if 0 < retry.max_attempts < attempts:
        findings.append(target.error(
            "max attempts", f"max_attempts {retry.max_attempts}, jobs' {attempts} attempts",
            f"max_attempts = {attempts} (cloudqueue terraform-vars ... gcp-cloud-tasks), or -1",
            f"Cloud Tasks drops a task after {retry.max_attempts} attempts, before the shim's last "
            "attempt writes its dead letter: the job is lost without a trace"))
    if retry.max_attempts < 0 and retry.max_retry_duration > timedelta(0):
        findings.append(target.error(
            "retry duration", f"max_attempts unlimited, max_retry_duration {_seconds(retry.max_retry_duration)}",
            f"max_attempts = {attempts}, or max_retry_duration_seconds = 0",
            "the duration alone ends retries and can drop a task before the attempt that writes "
            "its dead letter"))
    wanted = target.terraform_values("gcp-cloud-tasks")
    deployed = (retry.min_backoff.total_seconds(), retry.max_backoff.total_seconds(), retry.max_doublings)
    expected = (float(str(wanted["min_backoff_seconds"])), float(str(wanted["max_backoff_seconds"])),
                int(str(wanted["max_doublings"])))
    if deployed != expected:
        findings.append(target.warning(
            "backoff", f"min {deployed[0]:g} s, max {deployed[1]:g} s, {deployed[2]} doublings",
            f"min_backoff_seconds = {expected[0]:g}, max_backoff_seconds = {expected[1]:g}, "
            f"max_doublings = {expected[2]} (cloudqueue terraform-vars ... gcp-cloud-tasks)",
            "Cloud Tasks retries with the queue's backoff only: the jobs' own is not honoured"))
    return findings


def _pinned_target(target: QueueUnderCheck, backend: CloudTasksBackend, queue: Any) -> list[Finding]:
    from google.cloud import tasks_v2

    risk = ("whoever may enqueue (and act as the invoker) can send invoker-signed requests to any "
            "URL or audience")
    if "http_target" not in queue:
        return [target.error("OIDC target", "no queue-level http_target",
                             "pin uri_override and oidc_token at the queue (terraform/gcp-cloud-tasks does)",
                             risk)]
    pinned = queue.http_target
    findings: list[Finding] = []
    uri = pinned.uri_override
    enforce = tasks_v2.UriOverride.UriOverrideEnforceMode
    if "uri_override" not in pinned or uri.uri_override_enforce_mode == enforce.IF_NOT_EXISTS:
        findings.append(target.error(
            "OIDC target", "the queue does not enforce the task URL",
            "http_target.uri_override with uri_override_enforce_mode = ALWAYS", risk))
    elif backend.target and _pinned_url(uri) != _normalised(backend.target):
        findings.append(target.error(
            "OIDC target", f"tasks go to {_pinned_url(uri)}",
            f"pin the app's target, {backend.target} (the module's target_url)",
            "every task is sent somewhere the app's function is not"))
    token = pinned.oidc_token
    if "oidc_token" not in pinned or not token.service_account_email:
        findings.append(target.error(
            "OIDC target", "the queue sets no OIDC token",
            f"http_target.oidc_token for {backend.service_account or 'the invoker account'}", risk))
    else:
        if backend.service_account and token.service_account_email != backend.service_account:
            findings.append(target.error(
                "OIDC target", f"tokens for {token.service_account_email}",
                f"tokens for {backend.service_account} (the app's service_account)",
                "the shim refuses tokens for another account: every task fails"))
        audience = token.audience or _pinned_url(uri)
        if backend.audience and audience != backend.audience:
            findings.append(target.error(
                "OIDC target", f"tokens for audience {audience}",
                f"audience {backend.audience} (the app's audience)",
                "the shim refuses tokens for another audience: every task fails"))
    return findings


def _pinned_url(uri: Any) -> str:
    scheme = "http" if uri.scheme.name == "HTTP" else "https"
    port = f":{uri.port}" if uri.port else ""
    path = uri.path_override.path or "/"
    query = f"?{uri.query_override.query_params}" if uri.query_override.query_params else ""
    return f"{scheme}://{uri.host}{port}{path}{query}"


def _normalised(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")


# -- Pub/Sub ------------------------------------------------------------------------------------

def check_pubsub(target: QueueUnderCheck) -> list[Finding]:
    """Every finding for one ``pubsub://`` topic's subscription (see the module docstring)."""
    backend = target.backend
    if not isinstance(backend, PubSubBackend):
        return [target.note("checks", f"{backend!r} is not a Pub/Sub backend", "nothing checked")]
    if backend.subscription_path is None:
        return [target.note("subscription", "the URL names no subscription",
                            "add ?subscription=... to check how the jobs are delivered")]
    with translated(f"reading subscription {backend.subscription_path}"):
        sub = backend.subscriber.get_subscription(request={"subscription": backend.subscription_path},
                                                  timeout=_TIMEOUT)
    findings = _dead_letter_policy(target, sub)
    findings += _retry_policy(target, sub)
    push = bool(sub.push_config.push_endpoint)
    findings += _ack_deadline(target, sub.ack_deadline_seconds, push)
    if push:
        findings += _push_auth(target, sub.push_config)
    if target.ordered_jobs and not sub.enable_message_ordering:
        findings.append(target.error(
            "message ordering", f"ordering off; {', '.join(target.ordered_jobs)} use an ordering_key",
            "enable_message_ordering = true (a new subscription: it cannot be changed)",
            "messages of one ordering key are delivered in any order"))
    return findings


def _dead_letter_policy(target: QueueUnderCheck, sub: Any) -> list[Finding]:
    attempts = target.max_attempts
    wanted = min(target.max_receives, _MAX_DELIVERY_ATTEMPTS)
    if "dead_letter_policy" not in sub or not sub.dead_letter_policy.dead_letter_topic:
        return [target.error(
            "dead-letter policy", "none",
            f"dead_letter_policy with max_delivery_attempts = {wanted} (terraform/gcp-pubsub)",
            "Pub/Sub counts deliveryAttempt only with one: every delivery is attempt 1, a failing "
            "job is retried until the message expires and never dead-lettered")]
    count = sub.dead_letter_policy.max_delivery_attempts
    if count < attempts:
        return [target.error(
            "dead-letter policy", f"max_delivery_attempts {count}, below the jobs' {attempts} attempts",
            f"max_delivery_attempts = {wanted} (cloudqueue terraform-vars ... gcp-pubsub)",
            f"Pub/Sub dead-letters a job after {count} deliveries, before its attempts have run, "
            "with no reason")]
    if count < wanted:
        headroom = min(receive_headroom(attempts), wanted - attempts)
        return [target.error(
            "dead-letter policy", f"max_delivery_attempts {count}: {count - attempts} over the jobs' "
            f"{attempts} attempts",
            f"max_delivery_attempts = {wanted}: {attempts} attempts + {headroom} headroom "
            "(cloudqueue terraform-vars ... gcp-pubsub)",
            "deliveries that never start a job count too, so Pub/Sub dead-letters jobs before "
            "their attempts ran, with no reason")]
    return []


def _retry_policy(target: QueueUnderCheck, sub: Any) -> list[Finding]:
    wanted = target.terraform_values("gcp-pubsub")
    expected = (float(str(wanted["minimum_backoff_seconds"])), float(str(wanted["maximum_backoff_seconds"])))
    fix = (f"retry_policy {{ minimum_backoff = {expected[0]:g}s, maximum_backoff = {expected[1]:g}s }} "
           "(cloudqueue terraform-vars ... gcp-pubsub)")
    if "retry_policy" not in sub:
        return [target.warning("retry policy", "none", fix,
                               "a nacked message comes back at once: failed jobs retry without backoff")]
    policy = sub.retry_policy
    deployed = (policy.minimum_backoff.total_seconds(), policy.maximum_backoff.total_seconds())
    if deployed != expected:
        return [target.warning(
            "retry policy", f"{deployed[0]:g} s to {deployed[1]:g} s", fix,
            "pushed jobs are retried with the subscription's backoff, not their own")]
    return []


def _ack_deadline(target: QueueUnderCheck, deadline: int, push: bool) -> list[Finding]:
    settings = target.settings
    if push:
        timeout = settings.function_timeout
        if timeout is not None and deadline < timeout.total_seconds():
            return [target.error(
                "ack deadline", f"{deadline} s, function timeout {_seconds(timeout)}",
                f"ack_deadline_seconds >= {timeout.total_seconds():g} (at most 600)",
                "Pub/Sub pushes the message again while the function still runs it: two runs at once")]
        return []
    beat = settings.heartbeat.total_seconds()
    if deadline < beat:
        return [target.error(
            "ack deadline", f"{deadline} s, worker heartbeat {beat:g} s",
            f"ack_deadline_seconds >= {_BEATS_PER_DEADLINE * beat:g}, or a shorter worker heartbeat",
            "a message comes back to another consumer before the first heartbeat extends it: two "
            "runs at once")]
    if deadline < _BEATS_PER_DEADLINE * beat:
        return [target.warning(
            "ack deadline", f"{deadline} s, worker heartbeat {beat:g} s",
            f"ack_deadline_seconds >= {_BEATS_PER_DEADLINE * beat:g}",
            "one late or failed heartbeat lets the message come back while its job runs")]
    return []


def _push_auth(target: QueueUnderCheck, push: Any) -> list[Finding]:
    findings: list[Finding] = []
    options: Mapping[str, list[str]] = parse_qs(urlsplit(target.url or "").query)
    audience = (options.get("push_audience") or [os.environ.get("CLOUDQUEUE_PUSH_AUDIENCE", "")])[0]
    account = (options.get("push_service_account") or [os.environ.get("CLOUDQUEUE_PUSH_SERVICE_ACCOUNT", "")])[0]
    if not push.push_endpoint.startswith("https://"):
        findings.append(target.error(
            "push endpoint auth", f"pushes to {push.push_endpoint}", "an https:// push endpoint",
            "job payloads and tokens travel in clear"))
    if "oidc_token" not in push or not push.oidc_token.service_account_email:
        findings.append(target.error(
            "push endpoint auth", "pushes carry no OIDC token",
            "push_config.oidc_token for the push account (terraform/gcp-pubsub sets it)",
            "the shim cannot tell Pub/Sub from anyone else who can reach the endpoint"))
        return findings
    token = push.oidc_token
    if account and token.service_account_email != account:
        findings.append(target.error(
            "push endpoint auth", f"tokens for {token.service_account_email}",
            f"tokens for {account} (what the shim checks)", "the shim refuses every push"))
    sent_audience = token.audience or push.push_endpoint
    if audience and sent_audience != audience:
        findings.append(target.error(
            "push endpoint auth", f"tokens for audience {sent_audience}",
            f"audience {audience} (what the shim checks)", "the shim refuses every push"))
    return findings


# -- the idempotency store --------------------------------------------------------------------

def check_store(target: StoreUnderCheck) -> list[Finding]:
    """The ``firestore://`` store: a document read works (project, database, grants), and
    the collection has a TTL policy on ``expires_at`` (read with the Firestore Admin API;
    the emulator has none, so there it is a note)."""
    from .firestore import TTL_FIELD, FirestoreStore

    store = target.store
    if not isinstance(store, FirestoreStore):
        return [target.note("checks", f"{store!r} is not a Firestore store", "nothing checked")]
    store.get("cloudqueue-doctor-probe")  # CloudQueueError when unreachable or refused
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return [target.note("ttl", "the Firestore emulator has no TTL policies", "nothing to check here")]
    from google.api_core import exceptions as gexc
    from google.cloud import firestore_admin_v1

    group = store.collection.rsplit("/", 1)[-1]
    name = (f"projects/{store.project}/databases/{store.database or '(default)'}/collectionGroups/"
            f"{group}/fields/{TTL_FIELD}")
    client = firestore_admin_v1.FirestoreAdminClient()
    try:
        with translated(f"Firestore Admin GetField({name})"):
            field = client.get_field(name=name, timeout=_TIMEOUT)
    except Exception as exc:  # a field without its own configuration reads as NotFound
        if not isinstance(exc.__cause__, gexc.NotFound):
            raise
        field = None
    return ttl_findings(target, field, group)


def ttl_findings(target: StoreUnderCheck, field: Any, group: str) -> list[Finding]:
    """An error unless ``field`` (a Firestore Admin ``Field``, or None) has an active TTL policy."""
    from .firestore import TTL_FIELD

    state = None
    if field is not None and field.ttl_config is not None:
        state = type(field.ttl_config).State(field.ttl_config.state).name
    if state in ("ACTIVE", "CREATING"):
        return []
    return [target.error(
        "ttl", f"no active TTL policy on {group}.{TTL_FIELD}" + (f" (state {state})" if state else ""),
        f"store_collection = {group!r} in terraform/gcp-pubsub or gcp-cloud-tasks (a TTL policy on {TTL_FIELD})",
        "lapsed records are never deleted: the collection grows by one document per guarded job for good")]


# -- the claim check's bucket ------------------------------------------------------------------

_DAY = 86400
#: Pub/Sub keeps a subscription's messages this long unless told otherwise
_DEFAULT_RETENTION = timedelta(days=7)
#: the longest Cloud Tasks keeps a task
_TASK_LIFETIME = timedelta(days=31)


def check_payload_store(target: PayloadStoreUnderCheck) -> list[Finding]:
    """The ``gs://`` payload store's bucket and its lifecycle rule (see the module docstring)."""
    from .gcs import GCSPayloadStore, _Gone
    from .gcs import _translated as gcs_translated

    store = target.store
    if not isinstance(store, GCSPayloadStore):
        return [target.note("checks", f"{store!r} is not a Cloud Storage payload store", "nothing checked")]
    name, prefix = store.bucket_name, store.prefix
    fix = "payload_bucket = { location = ... } in terraform/gcp-pubsub or gcp-cloud-tasks (cloudqueue " \
          "terraform-vars prints the rest)"
    try:
        with gcs_translated(f"reading bucket {name}"):
            bucket = store.client.get_bucket(name, timeout=_TIMEOUT)
    except _Gone:
        return [target.error("bucket", f"no bucket {name!r}", fix,
                             "every enqueue of a large payload fails (the producer cannot upload it)")]
    where = f"gs://{name}/{prefix}/" if prefix else f"gs://{name}/"
    ages = [int(rule["condition"]["age"]) for rule in bucket.lifecycle_rules
            if _deletes_under(rule, prefix)]
    if not ages:
        return [target.warning(
            "lifecycle rule", f"no Delete rule by age covers {where}", f"a lifecycle rule on the prefix ({fix})",
            "what the consumers do not delete (a send that failed after the upload, a failed delete, "
            "dead letters never redriven) stays in the bucket for good")]
    days = min(ages)
    needed = _needed_days(target)
    if needed is None:
        return [target.note("lifecycle rule", f"objects under {where} are deleted after {days} days",
                            "none; no Pub/Sub or Cloud Tasks queue of the app to compare it with")]
    wanted, why = needed
    if days < wanted:
        return [target.error(
            "lifecycle rule", f"objects under {where} are deleted after {days} days; a message can point "
            f"at one for {why}",
            f"age of at least {wanted} days, plus the longest delay= / at= the producers use "
            "(payload_bucket.max_delay_days; the module computes it)",
            "a retried, delayed or dead-lettered message whose object the rule deleted is dead-lettered "
            "as missing, and its redrive cannot run")]
    return []


def _deletes_under(rule: Mapping[str, Any], prefix: str) -> bool:
    """A Delete rule by age alone (optionally by prefix) that covers every object under ``prefix``."""
    condition = rule.get("condition") or {}
    if (rule.get("action") or {}).get("type") != "Delete" or not condition.get("age"):
        return False
    if set(condition) - {"age", "matchesPrefix"}:
        return False  # by storage class, date, version...: not every object
    prefixes = condition.get("matchesPrefix")
    return not prefixes or any((prefix + "/").startswith(str(p)) for p in prefixes)


def _needed_days(target: PayloadStoreUnderCheck) -> tuple[int, str] | None:
    """The shortest safe rule age over the app's queues, and what it is made of."""
    longest: tuple[int, str] | None = None
    for queue in target.queues:
        backend = queue.backend
        if isinstance(backend, PubSubBackend) and backend.subscription_path is not None:
            with translated(f"reading subscription {backend.subscription_path}"):
                sub = backend.subscriber.get_subscription(request={"subscription": backend.subscription_path},
                                                          timeout=_TIMEOUT)
            kept = _retention(sub)
            dead = _dead_letter_retention(backend, sub.dead_letter_policy.dead_letter_topic
                                          if "dead_letter_policy" in sub else "")
            what = f"{_days(kept)} in the subscription + {_days(dead)} in the dead-letter subscription"
        elif isinstance(backend, CloudTasksBackend):
            from .pubsub import TopicDeadLetters

            kept, dead = _TASK_LIFETIME, timedelta(0)
            letters = backend._dead
            if isinstance(letters, TopicDeadLetters) and letters.subscription:
                with translated(f"reading subscription {letters.subscription}"):
                    dead = _retention(letters._clients.subscriber.get_subscription(
                        request={"subscription": letters.subscription}, timeout=_TIMEOUT))
            what = f"31 days as a task + {_days(dead)} in the dead-letter subscription"
        else:
            continue
        days = math.ceil((kept + dead).total_seconds() / _DAY) + 1
        if longest is None or days > longest[0]:
            longest = (days, what)
    return longest


def _dead_letter_retention(backend: PubSubBackend, topic: str) -> timedelta:
    """The longest retention of the subscriptions that keep a dead-letter topic's messages."""
    if not topic:
        return timedelta(0)
    with translated(f"listing the subscriptions of {topic}"):
        names = list(backend.publisher.list_topic_subscriptions(request={"topic": topic}, timeout=_TIMEOUT))
    kept = timedelta(0)
    for name in names:
        with translated(f"reading subscription {name}"):
            kept = max(kept, _retention(backend.subscriber.get_subscription(request={"subscription": name},
                                                                            timeout=_TIMEOUT)))
    return kept


def _retention(sub: Any) -> timedelta:
    value = sub.message_retention_duration if "message_retention_duration" in sub else None
    seconds = value.total_seconds() if isinstance(value, timedelta) else 0.0
    return timedelta(seconds=seconds) if seconds > 0 else _DEFAULT_RETENTION


def _days(value: timedelta) -> str:
    return f"{value.total_seconds() / _DAY:g} d"
