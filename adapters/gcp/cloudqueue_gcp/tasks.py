"""The Cloud Tasks backend: HTTP-target tasks pushed, with an OIDC token, to a function.

URL: ``cloudtasks://PROJECT/LOCATION/QUEUE?target=<https url>&service_account=<email>
&audience=<aud>&dead_letter=<pubsub://PROJECT/TOPIC?subscription=SUB or
cloudtasks://PROJECT/LOCATION/DLQUEUE>`` with options ``dispatch_deadline`` (seconds, the
task's HTTP timeout; default 600), ``timeout`` (seconds any one call, retries included,
may take; default 30; past it ``BackendUnavailable`` names the endpoint) and
``endpoint=HOST:PORT`` (a Cloud Tasks server spoken to over a plain loopback gRPC channel,
for tests). The ``dead_letter`` URL is
percent-encoded when it carries its own query.

Semantics, honestly:

- Push only: the platform POSTs each task to ``target``; the attempt is
  ``X-CloudTasks-TaskRetryCount + 1``. A failed attempt is answered non-2xx and the queue's
  retry_config sets the backoff (a job's own backoff and ``RetryLater`` delays cannot be
  honoured per task); its ``max_attempts`` must be at least the jobs' attempts, or
  unlimited, else Cloud Tasks drops the task silently after its last attempt.
- An idempotency key becomes the task name (a hash of the key, then a readable part), so
  a second enqueue with the key is a no-op returning the same job id. Cloud Tasks keeps a
  name reserved for about an hour after the task is gone (up to 9 days).
- Delays up to 30 days use ``schedule_time``; longer ones hop through ``cqnotbefore``.
- Cloud Tasks has no dead letters: the shim writes Permanent, poison and exhausted tasks
  to the ``dead_letter`` destination, then answers 2xx.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from cloudqueue import ConfigurationError, QueueNotFound
from cloudqueue.backends.base import (
    Backend,
    Capabilities,
    DeadLetter,
    Delivery,
    OutgoingMessage,
    QueueStats,
)
from cloudqueue.clock import SYSTEM_CLOCK, Clock, format_time, parse_time

from ._common import (
    ATTR_TYPE,
    DEFAULT_TIMEOUT,
    call_retry,
    parse_options,
    parse_seconds,
    parse_timeout,
    require,
    translated,
)

if TYPE_CHECKING:
    from google.cloud.tasks_v2 import CloudTasksClient

    from cloudqueue import Reason

MAX_SCHEDULE = timedelta(days=30)
#: an HTTP-target task may carry at most 1 MB
MAX_TASK_SIZE = 1024 * 1024 - 16 * 1024
DEFAULT_DISPATCH_DEADLINE = timedelta(minutes=10)
#: CreateTask calls in flight at once for one batch
_SEND_THREADS = 8
_OPTIONS = ("target", "service_account", "audience", "dead_letter", "dispatch_deadline", "endpoint", "timeout")
TASKS_ENDPOINT = "cloudtasks.googleapis.com"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
#: headers a dead letter carries in a paused Cloud Tasks queue
H_REASON = "X-Cloudqueue-Reason"
H_TYPE = "X-Cloudqueue-Type"
H_ATTEMPTS = "X-Cloudqueue-Attempts"
H_DEAD_AT = "X-Cloudqueue-Dead-Lettered-At"
H_SOURCE = "X-Cloudqueue-Source"


def task_id_for_key(key: str) -> str:
    """A safe, deterministic task id for an idempotency key.

    Task ids allow ``[A-Za-z0-9_-]`` up to 500 characters. A hash comes first (Cloud
    Tasks spreads load by name prefix and warns against sequential names), then a
    readable remnant of the key for whoever lists the queue.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    readable = _UNSAFE.sub("-", key).strip("-")[:100]
    return f"k{digest}-{readable}" if readable else f"k{digest}"


def _client(endpoint: str | None) -> Any:
    tasks = require("google.cloud.tasks_v2")
    if endpoint is None:
        return tasks.CloudTasksClient()
    import grpc
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    return tasks.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(endpoint)))


class _LazyClient:
    """The Cloud Tasks client, made on first use, and how long each call may take."""

    def __init__(self, client: CloudTasksClient | None, endpoint: str | None,
                 timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        self._client = client
        self._endpoint = endpoint
        self.endpoint = endpoint or TASKS_ENDPOINT
        self.timeout = timeout
        self.seconds = timeout.total_seconds()
        self._retry: Any = None
        self._lock = threading.Lock()

    @property
    def retry(self) -> Any:
        """The bounded retry of idempotent calls (list, get, delete)."""
        if self._retry is None:
            self._retry = call_retry(self.timeout)
        return self._retry

    def get(self) -> Any:
        if self._client is None:
            with self._lock, translated(f"opening a Cloud Tasks client for {self.endpoint}"):
                if self._client is None:
                    self._client = _client(self._endpoint)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            transport: Any = self._client.transport
            transport.close()


class DeadLetterStore(Protocol):
    """Where a Cloud Tasks queue keeps its dead letters."""

    def write(self, body: bytes, reason: str, attributes: dict[str, str], *, job_type: str | None,
              attempts: int | None) -> None: ...

    def list(self, limit: int = 100) -> list[DeadLetter]: ...

    def take(self, message_ids: Sequence[str] | None,
             resend: Callable[[bytes, dict[str, str]], None]) -> int: ...

    def purge(self) -> int: ...


class QueueDeadLetters:
    """Dead letters kept as tasks in a second, paused Cloud Tasks queue.

    The queue must stay paused (Terraform creates it so): its tasks are never dispatched;
    each carries the original body and the reason in ``X-Cloudqueue-*`` headers.
    """

    def __init__(self, client: _LazyClient, queue_path: str, target: str | None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._client = client
        self.queue_path = queue_path
        self.target = target or "https://dead-letters.invalid/"
        self.clock = clock

    def write(self, body: bytes, reason: str, attributes: dict[str, str], *, job_type: str | None,
              attempts: int | None) -> None:
        headers = {"Content-Type": "application/json", H_REASON: quote(reason[:4000], safe=" :'(),.-_/"),
                   H_DEAD_AT: format_time(self.clock.now())}
        if job_type:
            headers[H_TYPE] = quote(job_type)
        if attempts is not None:
            headers[H_ATTEMPTS] = str(attempts)
        if attributes.get("task"):
            headers[H_SOURCE] = quote(attributes["task"])
        task = {"http_request": {"url": self.target, "http_method": "POST", "headers": headers, "body": body}}
        lazy = self._client
        with translated(f"writing a dead letter to {self.queue_path} at {lazy.endpoint}"):
            lazy.get().create_task(request={"parent": self.queue_path, "task": task}, timeout=lazy.seconds)

    def _tasks(self) -> Iterator[Any]:
        from google.cloud.tasks_v2 import Task

        lazy = self._client
        with translated(f"listing dead letters in {self.queue_path} at {lazy.endpoint}"):
            yield from lazy.get().list_tasks(
                request={"parent": self.queue_path, "response_view": Task.View.FULL, "page_size": 1000},
                retry=lazy.retry, timeout=lazy.seconds)

    @staticmethod
    def _letter(task: Any) -> DeadLetter:
        headers = dict(task.http_request.headers)
        when = headers.get(H_DEAD_AT)
        attempts = headers.get(H_ATTEMPTS, "")
        return DeadLetter(message_id=task.name.rsplit("/", 1)[-1], body=bytes(task.http_request.body),
                          reason=unquote(headers.get(H_REASON, "dead-lettered")),
                          job_type=unquote(headers[H_TYPE]) if H_TYPE in headers else None,
                          dead_lettered_at=parse_time(when) if when else None,
                          attempts=int(attempts) if attempts.isdigit() else None)

    def list(self, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for task in self._tasks():
            if len(letters) >= limit:
                break
            letters.append(self._letter(task))
        return letters

    def _delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        lazy = self._client
        with translated(f"deleting dead letter {name} at {lazy.endpoint}"):
            try:
                lazy.get().delete_task(request={"name": name}, retry=lazy.retry, timeout=lazy.seconds)
            except NotFound:
                pass  # already gone: what we wanted

    def take(self, message_ids: Sequence[str] | None,
             resend: Callable[[bytes, dict[str, str]], None]) -> int:
        tasks = {t.name.rsplit("/", 1)[-1]: t for t in self._tasks()}
        if message_ids is not None:
            missing = [m for m in message_ids if m not in tasks]
            if missing:
                raise QueueNotFound(f"no dead letter with id {', '.join(missing)} in {self.queue_path}")
        chosen = list(tasks) if message_ids is None else list(dict.fromkeys(message_ids))
        for short in chosen:
            task = tasks[short]
            resend(bytes(task.http_request.body), {})
            self._delete(task.name)
        return len(chosen)

    def purge(self) -> int:
        names = [t.name for t in self._tasks()]
        for name in names:
            self._delete(name)
        return len(names)


class CloudTasksBackend(Backend):
    """HTTP-target tasks on a Cloud Tasks queue, pushed to a function with an OIDC token.

    Args:
        project / location / queue: the queue.
        target: the URL every task is POSTed to (the function's).
        service_account: the email the OIDC token is minted for (None: no token).
        audience: the token's audience (default: ``target``).
        dead_letters: where dead letters go (see ``dead_letter_store``); None: nowhere,
            and a dead letter raises so the task is retried rather than lost.
        dispatch_deadline: how long Cloud Tasks waits for the function's answer.
        client: an injected ``google.cloud.tasks_v2.CloudTasksClient``.
        endpoint: HOST:PORT of a Cloud Tasks server on a plain gRPC channel (tests).
        timeout: the longest one call (retries included) may take before ``BackendUnavailable``.
    """

    scheme = "cloudtasks"

    def __init__(self, project: str, location: str, queue: str, *, target: str | None = None,
                 service_account: str | None = None, audience: str | None = None,
                 dead_letters: DeadLetterStore | None = None,
                 dispatch_deadline: timedelta = DEFAULT_DISPATCH_DEADLINE,
                 client: CloudTasksClient | None = None, endpoint: str | None = None,
                 clock: Clock = SYSTEM_CLOCK, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
        if not (project and location and queue):
            raise ConfigurationError("cloudtasks backend needs a project, a location and a queue")
        if not timedelta(seconds=15) <= dispatch_deadline <= timedelta(minutes=30):
            raise ConfigurationError("cloudtasks dispatch_deadline must be between 15 s and 30 min")
        self.project, self.location, self.queue = project, location, queue
        self.queue_path = f"projects/{project}/locations/{location}/queues/{queue}"
        self.target = target
        self.service_account = service_account
        self.audience = audience or target
        self.dispatch_deadline = dispatch_deadline
        self.clock = clock
        self._client = _LazyClient(client, endpoint, timeout)
        self._dead = dead_letters
        self._caps = Capabilities(max_delay=MAX_SCHEDULE, delay_hops=True, max_message_size=MAX_TASK_SIZE,
                                  max_batch=100, fifo=False, dedup=True, pull=False, push=True,
                                  visibility=False)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def client(self) -> CloudTasksClient:
        client: CloudTasksClient = self._client.get()
        return client

    # -- producing -----------------------------------------------------------------------
    def _task(self, body: bytes, delay: timedelta, key: str | None) -> dict[str, Any]:
        if not self.target:
            raise ConfigurationError(f"cloudtasks queue {self.queue_path} has no target URL; add "
                                     "?target=<https url of the function> to the backend URL")
        request: dict[str, Any] = {"url": self.target, "http_method": "POST", "body": body,
                                   "headers": {"Content-Type": "application/json"}}
        if self.service_account:
            request["oidc_token"] = {"service_account_email": self.service_account,
                                     "audience": self.audience or self.target}
        task: dict[str, Any] = {"http_request": request,
                                "dispatch_deadline": self.dispatch_deadline}
        if delay > timedelta(0):
            task["schedule_time"] = self.clock.now() + delay
        if key is not None:
            task["name"] = f"{self.queue_path}/tasks/{task_id_for_key(key)}"
        return task

    def send(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Create one task per message; Cloud Tasks has no batch call, so a batch goes in parallel."""
        from google.api_core.exceptions import AlreadyExists

        # the URL's own options first: a missing target is said before any credentials are looked for
        tasks = [self._task(out.body, out.delay, out.idempotency_key) for out in messages]
        lazy = self._client
        client = lazy.get()

        def create(task: dict[str, Any]) -> None:
            with translated(f"creating a task in {self.queue_path} at {lazy.endpoint}"):
                try:
                    client.create_task(request={"parent": self.queue_path, "task": task}, timeout=lazy.seconds)
                except AlreadyExists:
                    pass  # the key's task exists (or ran recently): the job id is the key's

        if len(tasks) == 1:
            create(tasks[0])
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(_SEND_THREADS, len(tasks))) as pool:
                for future in [pool.submit(create, task) for task in tasks]:
                    future.result()  # the first error, translated, is raised
        return [out.job_id for out in messages]

    def _resend(self, body: bytes, attributes: dict[str, str]) -> None:
        task = self._task(body, timedelta(0), None)
        lazy = self._client
        with translated(f"creating a task in {self.queue_path} at {lazy.endpoint}"):
            lazy.get().create_task(request={"parent": self.queue_path, "task": task}, timeout=lazy.seconds)

    # -- settling (push: the shim's HTTP status does most of it) --------------------------
    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: Cloud Tasks deletes the task when the function answers 2xx."""

    def retry(self, delivery: Delivery, delay: timedelta) -> None:
        """Nothing to do: the shim answers non-2xx and the queue's retry_config sets the delay."""

    def release(self, delivery: Delivery) -> None:
        """Nothing to do: a push delivery is never held."""

    def dead_letter(self, delivery: Delivery, reason: Reason) -> None:
        if self._dead is None:
            raise ConfigurationError(
                f"cloudtasks queue {self.queue_path} has no dead_letter destination; add "
                "?dead_letter=<pubsub://PROJECT/TOPIC or cloudtasks://PROJECT/LOCATION/DLQUEUE>")
        attributes = {"task": delivery.message_id, "queue": self.queue_path}
        self._dead.write(delivery.body, str(reason), attributes,
                         job_type=delivery.attributes.get(ATTR_TYPE), attempts=delivery.attempt)

    def _dead_letters(self) -> DeadLetterStore:
        if self._dead is None:
            raise ConfigurationError(f"cloudtasks queue {self.queue_path} has no dead_letter destination")
        return self._dead

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._dead_letters().list(limit)

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        return self._dead_letters().take(message_ids, self._resend)

    def purge_dead_letters(self) -> int:
        return self._dead_letters().purge()

    # -- inspecting ----------------------------------------------------------------------
    def stats(self) -> QueueStats:
        """Counts from the queue's tasks: due, scheduled later, and being dispatched."""
        from google.cloud.tasks_v2 import Task

        now = self.clock.now()
        waiting = delayed = in_flight = 0
        oldest: datetime | None = None
        lazy = self._client
        with translated(f"listing tasks of {self.queue_path} at {lazy.endpoint}"):
            for task in lazy.get().list_tasks(
                    request={"parent": self.queue_path, "response_view": Task.View.BASIC, "page_size": 1000},
                    retry=lazy.retry, timeout=lazy.seconds):
                attempt = task.last_attempt
                if attempt and attempt.dispatch_time and not attempt.response_time:
                    in_flight += 1
                elif task.schedule_time and _aware(task.schedule_time) > now:
                    delayed += 1
                else:
                    waiting += 1
                if task.create_time:
                    created = _aware(task.create_time)
                    oldest = created if oldest is None else min(oldest, created)
        dead = len(self._dead.list(10_000)) if isinstance(self._dead, QueueDeadLetters) else \
            _topic_backlog(self._dead)
        return QueueStats(waiting=waiting, in_flight=in_flight, delayed=delayed, dead_lettered=dead,
                          oldest_age=max(now - oldest, timedelta(0)) if oldest else None)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"<CloudTasksBackend {self.queue_path}>"


def _topic_backlog(store: DeadLetterStore | None) -> int | None:
    """Dead letters waiting on a Pub/Sub topic, from Cloud Monitoring (None when unknown)."""
    from .pubsub import TopicDeadLetters

    return store.backlog() if isinstance(store, TopicDeadLetters) else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def dead_letter_store(url: str, *, client: CloudTasksClient | None = None, endpoint: str | None = None,
                      target: str | None = None, publisher: Any = None, subscriber: Any = None,
                      clock: Clock = SYSTEM_CLOCK, timeout: timedelta = DEFAULT_TIMEOUT) -> DeadLetterStore:
    """Open a dead-letter destination: ``pubsub://PROJECT/TOPIC[?subscription=SUB&emulator=H:P]``
    (``publisher`` / ``subscriber``: injected Pub/Sub clients) or
    ``cloudtasks://PROJECT/LOCATION/DLQUEUE`` (a paused queue; ``client``: an injected client)."""
    parts = urlsplit(url)
    path = (parts.netloc + parts.path).strip("/").split("/")
    if parts.scheme == "pubsub":
        from .pubsub import TopicDeadLetters, _Clients, monitoring_for

        options = parse_options("pubsub", parts.query, ("subscription", "emulator", "monitoring"))
        if len(path) != 2 or not all(path):
            raise ConfigurationError(f"dead_letter URL {url!r} must be pubsub://PROJECT/TOPIC")
        import os

        emulator = options.get("emulator") or os.environ.get("PUBSUB_EMULATOR_HOST") or None
        return TopicDeadLetters(_Clients(publisher, subscriber, emulator, timeout), path[0], path[1],
                                options.get("subscription") or None, clock,
                                monitoring_for(path[0], options.get("monitoring") or None, emulator, timeout))
    if parts.scheme == "cloudtasks":
        options = parse_options("cloudtasks", parts.query, ("endpoint",))
        if len(path) != 3 or not all(path):
            raise ConfigurationError(f"dead_letter URL {url!r} must be cloudtasks://PROJECT/LOCATION/QUEUE")
        lazy = _LazyClient(client, options.get("endpoint") or endpoint, timeout)
        return QueueDeadLetters(lazy, f"projects/{path[0]}/locations/{path[1]}/queues/{path[2]}",
                                target, clock)
    raise ConfigurationError(f"dead_letter URL {url!r} must start with pubsub:// or cloudtasks://")


def from_url(url: str, *, client: CloudTasksClient | None = None, publisher: Any = None,
             subscriber: Any = None, clock: Clock = SYSTEM_CLOCK) -> CloudTasksBackend:
    """Open ``cloudtasks://PROJECT/LOCATION/QUEUE?target=...`` (see the module docstring).

    Args:
        client: an injected Cloud Tasks client (also used for a dead-letter queue).
        publisher / subscriber: injected Pub/Sub clients, for a dead-letter topic.
    """
    parts = urlsplit(url)
    if parts.scheme != "cloudtasks":
        raise ConfigurationError(f"not a cloudtasks:// URL: {url!r}")
    path = (parts.netloc + parts.path).strip("/").split("/")
    if len(path) != 3 or not all(path):
        raise ConfigurationError(
            f"cloudtasks URL {url!r} must be cloudtasks://PROJECT/LOCATION/QUEUE[?options]")
    options = parse_options("cloudtasks", parts.query, _OPTIONS)
    endpoint = options.get("endpoint") or None
    target = options.get("target") or None
    deadline = parse_seconds("cloudtasks", "dispatch_deadline", options["dispatch_deadline"]) \
        if options.get("dispatch_deadline") else DEFAULT_DISPATCH_DEADLINE
    timeout = parse_timeout("cloudtasks", options.get("timeout"))
    dead = None
    if options.get("dead_letter"):
        # the same client serves a dead-letter queue on the same endpoint
        dead = dead_letter_store(options["dead_letter"], client=client, endpoint=endpoint,
                                 target=target, publisher=publisher, subscriber=subscriber, clock=clock,
                                 timeout=timeout)
    return CloudTasksBackend(path[0], path[1], path[2], target=target,
                             service_account=options.get("service_account") or None,
                             audience=options.get("audience") or None, dead_letters=dead,
                             dispatch_deadline=deadline, client=client, endpoint=endpoint, clock=clock,
                             timeout=timeout)
