"""Function shims: Cloud Tasks and Pub/Sub push requests (HTTP) and Eventarc CloudEvents.

    request ──verify OIDC──> 401/403, nothing runs
       └──> Cloud Tasks (X-CloudTasks-* headers), a Cloud Scheduler HTTP target
            (X-CloudScheduler-* headers: the slot is stamped into a schedule's fixed body),
            Pub/Sub push (wrapped JSON body) or unwrapped Pub/Sub push (the body is the
            envelope; x-goog-pubsub-* headers)
              └──> dispatcher ──> ACK ──────────> 200
                              ──> RETRY ────────> 500 (the platform retries with its backoff)
                              ──> DEAD_LETTER ──> write the dead letter, then 200
                                                  (the write failed: 500, nothing is lost)
                              ──> HOP ──────────> send on with the time left, then 200

Consuming imports no Google Cloud client library: only google-auth, to check the token.
The publishing SDK comes in when a dead letter or a hop must be written.

An app with several queues (``cq.App(queues={...})``) settles each request against the
queue it came from: the Cloud Tasks queue (``X-CloudTasks-QueueName``) or the Pub/Sub
subscription (the push body's ``subscription``, or ``x-goog-pubsub-subscription-name``)
is matched to the app's queues; a request from none of them is refused (500, so nothing
is lost) with an error naming the source and the app's queues.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from cloudqueue import ConfigurationError
from cloudqueue.backends.base import Backend, Capabilities, Delivery, OutgoingMessage
from cloudqueue.dispatch import Outcome, Result

from ._common import ATTR_ID, ATTR_KEY, ATTR_TYPE
from .oidc import GOOGLE_CERTS_URL, AuthError, PushAuth

if TYPE_CHECKING:
    from cloudqueue import App, Reason

    class HttpRequest(Protocol):
        """What the shim reads from a request (a Flask request, as functions-framework passes)."""

        @property
        def headers(self) -> Mapping[str, str]: ...

        def get_data(self) -> bytes: ...

log = logging.getLogger("cloudqueue.gcp")

DEFAULT_DISPATCH_DEADLINE = timedelta(minutes=10)
#: Pub/Sub's default ack deadline, which is also how long a push request may take
DEFAULT_PUSH_ACK_DEADLINE = timedelta(seconds=10)
_warned_no_attempt = False


Response = tuple[str, int, dict[str, str]]


class BadRequest(Exception):
    """A request that is neither a Cloud Tasks task nor a Pub/Sub push message."""


class ShimSettings:
    """How a shim authenticates requests and knows its deadline."""

    __slots__ = ("auth", "dispatch_deadline", "push_ack_deadline", "timeout")

    def __init__(self, *, auth: PushAuth | None, timeout: timedelta | None, dispatch_deadline: timedelta,
                 push_ack_deadline: timedelta) -> None:
        self.auth = auth
        self.timeout = timeout
        self.dispatch_deadline = dispatch_deadline
        self.push_ack_deadline = push_ack_deadline


def _url_options(app: App) -> tuple[str, dict[str, str]]:
    url = app.backend_url
    if url is None:
        backend = app.backend
        return backend.scheme, {}
    parts = urlsplit(url)
    return parts.scheme, dict(parse_qsl(parts.query))


def _settings(app: App, *, audience: str | list[str] | None, service_account: str | list[str] | None,
              verify: bool, certs_url: str, timeout: timedelta | None,
              dispatch_deadline: timedelta | None, push_ack_deadline: timedelta | None) -> ShimSettings:
    scheme, options = _url_options(app)
    if dispatch_deadline is None:
        text = options.get("dispatch_deadline")
        dispatch_deadline = timedelta(seconds=float(text)) if text else DEFAULT_DISPATCH_DEADLINE
    if timeout is None:
        text = os.environ.get("CLOUDQUEUE_FUNCTION_TIMEOUT") or os.environ.get("FUNCTION_TIMEOUT_SEC")
        timeout = timedelta(seconds=float(text)) if text else None
    auth = None
    if verify:
        if scheme == "cloudtasks":
            audience = audience or options.get("audience") or options.get("target")
            service_account = service_account or options.get("service_account")
        elif scheme == "pubsub":
            audience = audience or options.get("push_audience")
            service_account = service_account or options.get("push_service_account")
        audience = audience or os.environ.get("CLOUDQUEUE_PUSH_AUDIENCE")
        service_account = service_account or os.environ.get("CLOUDQUEUE_PUSH_SERVICE_ACCOUNT")
        if not audience or not service_account:
            raise ConfigurationError(
                "push authentication needs the token's audience and the invoker's service-account "
                "email: pass audience= and service_account=, put them in the backend URL "
                "(cloudtasks: audience/target and service_account; pubsub: push_audience and "
                "push_service_account), or set CLOUDQUEUE_PUSH_AUDIENCE and "
                "CLOUDQUEUE_PUSH_SERVICE_ACCOUNT; verify=False is for local emulators only")
        auth = PushAuth.of(audience, service_account, certs_url=certs_url)
    else:
        log.warning("PUSH AUTHENTICATION IS OFF for app %r: any caller can run its jobs. This is for "
                    "local emulators only; never deploy with verify=False", app.name)
    return ShimSettings(auth=auth, timeout=timeout, dispatch_deadline=dispatch_deadline,
                        push_ack_deadline=push_ack_deadline or DEFAULT_PUSH_ACK_DEADLINE)


def _deadline(started: datetime, *limits: timedelta | None) -> datetime | None:
    known = [limit for limit in limits if limit is not None]
    return started + min(known) if known else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value else None


def _count(text: str) -> int | None:
    """A non-negative decimal count, or None (no sign, no spaces, no other digits)."""
    if 0 < len(text) <= 9 and text.isascii() and text.isdigit():
        return int(text)
    return None


def cloud_tasks_delivery(headers: Mapping[str, str], body: bytes, settings: ShimSettings,
                         started: datetime) -> Delivery:
    """A Cloud Tasks request as a delivery: attempt = X-CloudTasks-TaskRetryCount + 1."""
    task = _header(headers, "X-CloudTasks-TaskName") or "?"
    text = headers.get("X-CloudTasks-TaskRetryCount", "0")
    retries = _count(text)
    if retries is None:
        raise BadRequest(f"X-CloudTasks-TaskRetryCount {text[:20]!r} is not a non-negative integer")
    attributes = {k: v for k, v in (
        ("queue", _header(headers, "X-CloudTasks-QueueName")), ("task", task),
        ("eta", _header(headers, "X-CloudTasks-TaskETA")),
        ("executions", _header(headers, "X-CloudTasks-TaskExecutionCount")),
        ("previous_response", _header(headers, "X-CloudTasks-TaskPreviousResponse")),
        ("retry_reason", _header(headers, "X-CloudTasks-TaskRetryReason"))) if v is not None}
    return Delivery(body=body, attempt=retries + 1, message_id=task, attributes=attributes,
                    deadline=_deadline(started, settings.dispatch_deadline, settings.timeout))


def pubsub_delivery(payload: Any, settings: ShimSettings, started: datetime) -> Delivery:
    """A Pub/Sub push body (or Eventarc MessagePublishedData) as a delivery."""
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
        raise BadRequest("not a Pub/Sub push body: expected {'message': {...}, 'subscription': ...}")
    message = payload["message"]
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("the Pub/Sub message's data is not base64") from None
    attempt = payload.get("deliveryAttempt")
    if type(attempt) is not int or attempt < 1:
        _warn_no_attempt(str(payload.get("subscription", "?")))
        attempt = 1
    attributes = message.get("attributes") or {}
    return Delivery(body=data, attempt=attempt,
                    message_id=str(message.get("messageId") or message.get("message_id") or "?"),
                    ordering_key=message.get("orderingKey") or None,
                    attributes={str(k): str(v) for k, v in attributes.items()},
                    deadline=_deadline(started, settings.push_ack_deadline, settings.timeout))


#: headers Cloud Scheduler adds to an HTTP target's request (the schedule time: unix-cron jobs)
H_SCHEDULER = "X-CloudScheduler"
H_SCHEDULER_JOB = "X-CloudScheduler-JobName"
H_SCHEDULER_TIME = "X-CloudScheduler-ScheduleTime"


def is_scheduler_request(headers: Mapping[str, str]) -> bool:
    """A Cloud Scheduler HTTP target's request posted to the function itself."""
    return bool(headers.get(H_SCHEDULER_TIME) or headers.get(H_SCHEDULER_JOB))


def scheduler_delivery(app: App, headers: Mapping[str, str], body: bytes, settings: ShimSettings,
                       started: datetime) -> Delivery:
    """A Cloud Scheduler firing as a delivery, its slot read from ``X-CloudScheduler-ScheduleTime``.

    The body is a schedule's fixed envelope (``cloudqueue terraform-vars``); the slot goes
    into its job id, time and idempotency key (``cron:<job>:<schedule>:<slot UTC>``, the key
    the local scheduler and EventBridge Scheduler give the slot), so a retried firing is the
    same job and the app's store runs it once. Cloud Scheduler sends no attempt number: the
    attempt counts as 1 (a store counts the runs of a slot exactly).
    """
    from cloudqueue.schedules import stamp_slot

    job_name = headers.get(H_SCHEDULER_JOB) or "?"
    text = headers.get(H_SCHEDULER_TIME) or ""
    attributes = {"scheduler_job": job_name}
    if text:
        try:
            slot = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{H_SCHEDULER_TIME} {text[:40]!r} is not an RFC 3339 time") from None
        if slot.tzinfo is None:
            raise BadRequest(f"{H_SCHEDULER_TIME} {text[:40]!r} has no UTC offset")
        slot = slot.astimezone(timezone.utc).replace(microsecond=0)
        attributes["schedule_time"] = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
        stamped = stamp_slot(app, body, slot)
        if stamped is None:
            log.warning("Cloud Scheduler job %s: the body is not the fixed body of a schedule of app %r "
                        "(write it with cloudqueue terraform-vars); it runs without a per-slot key",
                        job_name, app.name)
        else:
            body = stamped
    else:
        log.warning("Cloud Scheduler job %s sent no %s (only unix-cron jobs do): the firing runs "
                    "without a per-slot key", job_name, H_SCHEDULER_TIME)
    slot_text = attributes.get("schedule_time", "?")
    return Delivery(body=body, attempt=1, message_id=f"{job_name}@{slot_text}", attributes=attributes,
                    deadline=_deadline(started, settings.timeout))


def _scheduled_queue(app: App, body: bytes) -> Backend | None:
    """The queue of the job a scheduler firing names (None: the app's default)."""
    try:
        job_type = json.loads(body).get("type")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    job = app.jobs.get(job_type) if isinstance(job_type, str) else None
    return app.queue(job.queue) if job is not None else None


#: headers unwrapped push writes with write_metadata (attributes come as their own headers)
H_PUBSUB = "x-goog-pubsub-"
H_MESSAGE_ID = "x-goog-pubsub-message-id"
H_SUBSCRIPTION = "x-goog-pubsub-subscription-name"
H_ORDERING_KEY = "x-goog-pubsub-ordering-key"
H_DELIVERY_ATTEMPT = "x-goog-pubsub-delivery-attempt"
#: attributes cloudqueue publishes, read back from headers of an unwrapped push
_OWN_ATTRIBUTES = (ATTR_TYPE, ATTR_ID, ATTR_KEY)


def is_unwrapped_push(headers: Mapping[str, str]) -> bool:
    """An unwrapped push with ``write_metadata`` carries ``x-goog-pubsub-*`` headers."""
    return bool(headers.get(H_MESSAGE_ID) or headers.get(H_SUBSCRIPTION))


def unwrapped_delivery(headers: Mapping[str, str], body: bytes, settings: ShimSettings,
                       started: datetime) -> Delivery:
    """An unwrapped Pub/Sub push (``no_wrapper``): the body is the message's data itself.

    With ``write_metadata`` the message id, ordering key and delivery attempt come from
    ``x-goog-pubsub-*`` headers and the attributes from headers of their own name; without
    it nothing but the body arrives, and the attempt counts as 1. A body that is not an
    envelope is poison: it is dead-lettered with the reason, then answered 2xx.
    """
    text = headers.get(H_DELIVERY_ATTEMPT, "")
    attempt = _count(text) if text else None
    subscription = headers.get(H_SUBSCRIPTION) or "(unwrapped push)"
    if attempt is None or attempt < 1:
        _warn_no_attempt(subscription)
        attempt = 1
    attributes = {name: value for name in _OWN_ATTRIBUTES if (value := headers.get(name))}
    return Delivery(body=body, attempt=attempt, message_id=headers.get(H_MESSAGE_ID) or "?",
                    ordering_key=headers.get(H_ORDERING_KEY) or None, attributes=attributes,
                    deadline=_deadline(started, settings.push_ack_deadline, settings.timeout))


def is_wrapped_push(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("message"), dict)


def push_delivery(headers: Mapping[str, str], body: bytes, settings: ShimSettings,
                  started: datetime) -> Delivery:
    """A Pub/Sub push request, wrapped (JSON ``{"message": ...}``) or unwrapped."""
    if is_unwrapped_push(headers):
        return unwrapped_delivery(headers, body, settings, started)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if is_wrapped_push(payload):
        return pubsub_delivery(payload, settings, started)
    # no wrapper and no metadata headers: the body is all Pub/Sub sends
    return unwrapped_delivery(headers, body, settings, started)


#: the attribute Google's client libraries publish a message's creation trace context under
A_GOOGCLIENT_TRACEPARENT = "googclient_traceparent"


def _platform_trace(headers: Mapping[str, str], *first: str | None) -> tuple[str, ...]:
    """The trace contexts a request came with, for ``Delivery.platform_trace``: ``first``
    (message-level ones: a CloudEvent's ``traceparent``, the message's
    ``googclient_traceparent``), then the request's own ``traceparent`` header, else its
    ``X-Cloud-Trace-Context`` (Cloud Run and Cloud Functions set one of them)."""
    found: list[str] = []
    for value in (*first, headers.get("traceparent") or headers.get("X-Cloud-Trace-Context")):
        if value and value not in found:
            found.append(value)
    return tuple(found)


def _warn_no_attempt(subscription: str) -> None:
    global _warned_no_attempt
    if not _warned_no_attempt:
        _warned_no_attempt = True
        log.warning("push from subscription %s carries no deliveryAttempt (the subscription has no "
                    "dead-letter policy): every delivery counts as attempt 1, so a failing job is "
                    "retried until its message expires; give the subscription a dead-letter policy",
                    subscription)


class UnknownSource(ConfigurationError):
    """A push came from a queue or subscription that is none of the app's queues."""


class QueueRoutes:
    """Which of an app's queues a push came from, remembered per source."""

    __slots__ = ("_app", "_found")

    def __init__(self, app: App) -> None:
        self._app = app
        self._found: dict[tuple[str, str], Backend] = {}

    def backend(self, kind: str, source: str | None) -> Backend:
        """The backend of the app queue that ``source`` names (``kind``: "cloudtasks" or "pubsub").

        Raises:
            UnknownSource: the app has several queues and none of them is ``source``.
        """
        app = self._app
        if len(app.queue_names) == 1:
            return app.backend
        key = (kind, source or "")
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = self._match(kind, source)
        return found

    def _match(self, kind: str, source: str | None) -> Backend:
        app = self._app
        what = "Cloud Tasks queue" if kind == "cloudtasks" else "Pub/Sub subscription"
        if not source:
            fix = ("" if kind == "cloudtasks" else "; an unwrapped push must write its metadata "
                   "(push_config no_wrapper write_metadata = true) so the subscription is known")
            raise UnknownSource(f"app {app.name!r} has several queues ({', '.join(app.queue_names)}) "
                                f"and this push names no {what}{fix}")
        for name in app.queue_names:
            own = _source_of(app, name, kind)
            # a full path must match in full; a bare id (a Cloud Tasks queue name, or an
            # unwrapped push's subscription id) matches the last segment
            if own is not None and (source == own or ("/" not in source and own.rsplit("/", 1)[-1] == source)):
                return app.queue(name)
        known = ", ".join(f"{name} ({_source_of(app, name, kind) or 'not ' + kind})"
                          for name in app.queue_names)
        pointed = "queue" if kind == "cloudtasks" else "subscription"
        raise UnknownSource(f"push from {what} {source!r}, which is none of the queues of app "
                            f"{app.name!r}: {known}; point the {pointed} at the function of the "
                            "app that declares it, or add it to cq.App(queues=...)")


def _source_of(app: App, name: str, kind: str) -> str | None:
    """The Cloud Tasks queue id or the Pub/Sub subscription path of app queue ``name``,
    read from its URL (no client is made) or its backend."""
    url = app.queue_url(name)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != kind:
            return None
        path = (parts.netloc + parts.path).strip("/")
        if kind == "cloudtasks":
            return path.rsplit("/", 1)[-1] or None
        subscription = dict(parse_qsl(parts.query)).get("subscription")
        project = path.split("/", 1)[0]
        return f"projects/{project}/subscriptions/{subscription}" if subscription and project else None
    backend = app.queue(name)
    if backend.scheme != kind:
        return None
    found = getattr(backend, "queue" if kind == "cloudtasks" else "subscription_path", None)
    return found if isinstance(found, str) else None


def push_source(headers: Mapping[str, str], body: bytes) -> str | None:
    """The subscription a Pub/Sub push came from (the header, else the wrapped body's field)."""
    named = headers.get(H_SUBSCRIPTION)
    if named:
        return named
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    subscription = payload.get("subscription") if isinstance(payload, dict) else None
    return subscription if isinstance(subscription, str) else None


def handle_delivery(app: App, delivery: Delivery, backend: Backend | None = None) -> Response:
    """Run one pushed delivery through the core's lifecycle; answer what the platform needs.

    The outcome is applied by the core's one settle path against ``backend``, the queue
    the delivery came from (default: the app's), whose ack and retry are answered by this
    status: 2xx removes, non-2xx keeps.
    """
    dispatcher = app.dispatcher
    dispatcher.refresh()  # a success logged at INFO is timed
    prepared = dispatcher.prepare(delivery)
    result: Result = prepared if isinstance(prepared, Result) else dispatcher.run(prepared)
    if result.job_type and ATTR_TYPE not in delivery.attributes:
        delivery.attributes = {**delivery.attributes, ATTR_TYPE: result.job_type}  # for the dead letter
    applied = dispatcher.settle(PushBinding(backend or app.backend), result)
    if dispatcher.buffered:  # one request, one write of what middleware buffered
        dispatcher.flush()
    outcome = result.outcome
    if not applied:
        return "could not settle; retry", 500, {}
    if outcome is Outcome.ACK or outcome is Outcome.SKIP:
        return "ok", 200, {}
    if outcome is Outcome.HOP:
        return "hopped", 200, {}
    if outcome is Outcome.DEAD_LETTER:
        return "dead-lettered", 200, {}
    # retry, defer, release: the platform delivers it again (its retry policy sets when)
    return f"{outcome.value}: {result.reason.text if result.reason else ''}", 500, {}


class PushBinding(Backend):
    """The app's backend as a pushed delivery settles against it.

    The HTTP answer acknowledges or gives back a pushed message (2xx removes it, anything
    else keeps it), so ack, retry, release and extension change nothing here; dead
    letters, hops and sends go to the app's backend.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.scheme = backend.scheme
        self.clock = backend.clock

    @property
    def capabilities(self) -> Capabilities:
        from .pubsub import PubSubBackend

        if isinstance(self.backend, PubSubBackend):  # no SDK import, no call: nothing is pulled here
            return self.backend.declared_capabilities
        return self.backend.capabilities

    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        return self.backend.send(messages)

    def ack(self, delivery: Delivery) -> None:
        """2xx acknowledges it."""

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        """Non-2xx gives it back; the queue's retry policy sets when it returns."""

    def release(self, delivery: Delivery) -> None:
        """Non-2xx gives it back."""

    def defer(self, delivery: Delivery, delay: timedelta) -> None:
        """Non-2xx gives it back."""

    def extend_visibility(self, delivery: Delivery, timeout: timedelta) -> None:
        """The request's own deadline holds."""

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        self.backend.dead_letter(delivery, reason)

    def hop(self, delivery: Delivery, delay: timedelta) -> None:
        self.backend.hop(delivery, delay)

    def __repr__(self) -> str:
        return f"<push to {self.backend!r}>"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not JSON") from None


def _authenticate(settings: ShimSettings, headers: Mapping[str, str]) -> Response | None:
    if settings.auth is None:
        return None
    try:
        settings.auth.verify(headers.get("Authorization"))
    except AuthError as exc:
        log.warning("refused a push request (%d): %s", exc.status, exc)
        return str(exc), exc.status, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return None


def http_handler(app: App, *, audience: str | list[str] | None = None,
                 service_account: str | list[str] | None = None, verify: bool = True,
                 certs_url: str = GOOGLE_CERTS_URL, timeout: timedelta | None = None,
                 dispatch_deadline: timedelta | None = None,
                 push_ack_deadline: timedelta | None = None) -> Callable[[HttpRequest], Response]:
    """An HTTP function serving Cloud Tasks tasks and Pub/Sub push messages for ``app``.

    Args:
        app: the app whose jobs run; its backend receives dead letters and hops.
        audience / service_account: what the OIDC token must say (default: from the
            backend URL, then ``$CLOUDQUEUE_PUSH_AUDIENCE`` / ``$CLOUDQUEUE_PUSH_SERVICE_ACCOUNT``).
        verify: check the token. False is for local emulators only, and logged loudly.
        certs_url: where the token's signing certificates are published.
        timeout: the function's timeout (default: ``$CLOUDQUEUE_FUNCTION_TIMEOUT`` seconds).
        dispatch_deadline: the tasks' dispatch deadline (default: the URL's, or 10 min).
        push_ack_deadline: the push subscription's ack deadline (default 10 s).

    Raises:
        ConfigurationError: verification is on and the audience or account is unknown.
    """
    settings = _settings(app, audience=audience, service_account=service_account, verify=verify,
                         certs_url=certs_url, timeout=timeout, dispatch_deadline=dispatch_deadline,
                         push_ack_deadline=push_ack_deadline)
    routes = QueueRoutes(app)
    multi = len(app.queue_names) > 1

    def handle(request: HttpRequest) -> Response:
        started = datetime.fromtimestamp(time.time(), timezone.utc)
        headers = request.headers
        refused = _authenticate(settings, headers)
        if refused is not None:
            return refused
        body = request.get_data()
        try:
            if headers.get("X-CloudTasks-TaskName") or headers.get("X-CloudTasks-QueueName"):
                delivery = cloud_tasks_delivery(headers, body, settings, started)
                kind, source = "cloudtasks", delivery.attributes.get("queue")
            elif is_scheduler_request(headers):
                delivery = scheduler_delivery(app, headers, body, settings, started)
                kind, source = "scheduler", None
            else:
                delivery = push_delivery(headers, body, settings, started)
                kind, source = "pubsub", None
        except BadRequest as exc:
            log.error("bad push request: %s", exc)
            return f"bad request: {exc}", 400, {}
        delivery.platform_trace = _platform_trace(
            headers, delivery.attributes.get(A_GOOGCLIENT_TRACEPARENT) or headers.get(A_GOOGCLIENT_TRACEPARENT))
        backend = None
        if kind == "scheduler":
            backend = _scheduled_queue(app, delivery.body) if multi else None
        elif multi:
            try:
                backend = routes.backend(kind, source if kind == "cloudtasks" else push_source(headers, body))
            except UnknownSource as exc:
                log.error("%s", exc)
                return f"unknown queue: {exc}", 500, {}
        return handle_delivery(app, delivery, backend)

    handle.__name__ = f"cloudqueue_{app.name}"
    return handle


def _raw_push() -> dict[str, Any] | None:
    """The plain Pub/Sub push body behind a CloudEvent, if that is what was posted.

    functions-framework turns a plain push into a CloudEvent and drops ``deliveryAttempt``
    and the ordering key on the way; read from the request itself, a failing job's attempts
    are counted and it ends in dead letters instead of failing for ever.
    """
    try:
        from flask import request

        payload = json.loads(request.get_data())
    except (ImportError, RuntimeError, ValueError, UnicodeDecodeError):
        return None
    if is_wrapped_push(payload) and "specversion" not in payload:
        result: dict[str, Any] = payload
        return result
    return None


def _request_headers() -> Mapping[str, str]:
    """The headers of the request functions-framework is serving (none outside one)."""
    try:
        from flask import request

        return request.headers  # type: ignore[return-value]
    except (ImportError, RuntimeError):
        return {}


def _event_traceparent(event: Any) -> str | None:
    """A CloudEvent's ``traceparent`` extension attribute (Distributed Tracing), if any."""
    get = getattr(event, "get", None)  # cloudevents' CloudEvent, or a plain mapping
    value = get("traceparent") if callable(get) else None
    return value if isinstance(value, str) and value else None


class PushRefused(Exception):
    """Raised by the CloudEvent shim to refuse an event; functions-framework answers 500."""


def cloudevent_handler(app: App, *, audience: str | list[str] | None = None,
                       service_account: str | list[str] | None = None, verify: bool = True,
                       certs_url: str = GOOGLE_CERTS_URL, timeout: timedelta | None = None,
                       push_ack_deadline: timedelta | None = None) -> Callable[[Any], None]:
    """A CloudEvent function for Pub/Sub messages delivered by Eventarc.

    Returning acknowledges the event; raising makes functions-framework answer 500, so
    Pub/Sub redelivers it. The token is read from the request functions-framework serves.
    Arguments are those of ``http_handler``.
    """
    settings = _settings(app, audience=audience, service_account=service_account, verify=verify,
                         certs_url=certs_url, timeout=timeout, dispatch_deadline=None,
                         push_ack_deadline=push_ack_deadline)

    routes = QueueRoutes(app)

    def handle(event: Any) -> None:
        started = datetime.fromtimestamp(time.time(), timezone.utc)
        if settings.auth is not None:
            from flask import request

            refused = _authenticate(settings, request.headers)  # type: ignore[arg-type]
            if refused is not None:
                from werkzeug.exceptions import Forbidden, Unauthorized

                raise (Forbidden if refused[1] == 403 else Unauthorized)(refused[0])
        data = _raw_push() or event.data
        if isinstance(data, (bytes, str)):
            data = _json(data.encode() if isinstance(data, str) else data)
        try:
            delivery = pubsub_delivery(data, settings, started)
        except BadRequest as exc:
            from werkzeug.exceptions import BadRequest as HttpBadRequest

            raise HttpBadRequest(str(exc)) from None
        delivery.platform_trace = _platform_trace(
            _request_headers(), _event_traceparent(event), delivery.attributes.get(A_GOOGCLIENT_TRACEPARENT))
        backend = None
        if len(app.queue_names) > 1:
            subscription = data.get("subscription") if isinstance(data, dict) else None
            backend = routes.backend("pubsub", subscription if isinstance(subscription, str) else None)
        text, status, _ = handle_delivery(app, delivery, backend)
        if status >= 300:
            raise PushRefused(f"{delivery.message_id}: {text}")

    handle.__name__ = f"cloudqueue_{app.name}_cloudevent"
    return handle
