"""Create what an app's Google backend needs: topics, subscriptions, Cloud Tasks queues.

The Google counterpart of ``cloudqueue_aws.admin.ensure_queue``, for local emulators,
tests and small projects (Terraform is the way for production: terraform/gcp-*). Every
call is safe to repeat: what exists is updated to the settings asked for.

    python -m cloudqueue_gcp.admin MODULE:APP     # everything the app's backend URL names

Settings come from the app's jobs, as ``cloudqueue terraform-vars`` derives them: the
receive limit (``max_delivery_attempts`` / ``max_attempts``) leaves headroom over the
most attempts any job has (``cloudqueue.retry.max_receives_for``), and the retry backoff
spans the jobs' shortest initial and longest maximum backoff.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cloudqueue import ConfigurationError
from cloudqueue.retry import DEFAULT_RETRY, Retry, max_receives_for

from ._common import DEFAULT_TIMEOUT, call_retry, translated

if TYPE_CHECKING:
    from cloudqueue import App

__all__ = ["RetrySettings", "ensure", "ensure_queue", "ensure_subscription", "ensure_topic", "settings_for"]

#: Pub/Sub's bounds for a subscription's settings
_PUBSUB_ATTEMPTS = (5, 100)
_PUBSUB_BACKOFF = (timedelta(0), timedelta(seconds=600))
_ACK_DEADLINE = (10, 600)


@dataclass(frozen=True)
class RetrySettings:
    """What a queue or subscription must allow for a set of jobs."""

    #: the most attempts any job has
    attempts: int
    #: the receive limit with headroom over ``attempts``
    max_receives: int
    min_backoff: timedelta
    max_backoff: timedelta


def settings_for(retries: Iterable[Retry]) -> RetrySettings:
    """The settings that honour every one of ``retries`` (the default retry when empty)."""
    found = list(retries) or [DEFAULT_RETRY]
    attempts = max(r.attempts for r in found)
    backoffs = [r.backoff for r in found]
    return RetrySettings(attempts=attempts, max_receives=max_receives_for(attempts),
                         min_backoff=min(b.initial for b in backoffs),
                         max_backoff=max(b.maximum for b in backoffs))


def _app_settings(app: App | None) -> RetrySettings:
    return settings_for([job.retry for job in app.jobs.values()] if app is not None else [])


def _clamp(value: timedelta, bounds: tuple[timedelta, timedelta]) -> timedelta:
    return max(bounds[0], min(value, bounds[1]))


def _pubsub_clients(emulator: str | None, publisher: Any, subscriber: Any) -> tuple[Any, Any]:
    if publisher is not None and subscriber is not None:
        return publisher, subscriber
    from .pubsub import _clients

    made_publisher, made_subscriber = _clients(emulator, DEFAULT_TIMEOUT)
    return publisher or made_publisher, subscriber or made_subscriber


def ensure_topic(project: str, topic: str, *, emulator: str | None = None, publisher: Any = None,
                 timeout: timedelta = DEFAULT_TIMEOUT) -> str:
    """Create the topic if it is missing; return its path.

    Raises:
        PermissionDenied, BackendUnavailable, BackendError: the service refused or did not answer.
    """
    from google.api_core.exceptions import AlreadyExists

    publisher, _ = _pubsub_clients(emulator, publisher, object())
    path = f"projects/{project}/topics/{topic}"
    with translated(f"creating topic {path} at {emulator or 'pubsub.googleapis.com'}"):
        try:
            publisher.create_topic(request={"name": path}, retry=call_retry(timeout),
                                   timeout=timeout.total_seconds())
        except AlreadyExists:
            pass
    return path


def ensure_subscription(project: str, topic: str, subscription: str, *, app: App | None = None,
                        dead_letter_topic: str | None = None, ack_deadline: timedelta = timedelta(seconds=60),
                        push_endpoint: str | None = None, ordering: bool = False,
                        emulator: str | None = None, subscriber: Any = None,
                        timeout: timedelta = DEFAULT_TIMEOUT) -> str:
    """Create or update a subscription for the app's jobs; return its path.

    The retry policy spans the jobs' backoff (Pub/Sub allows 0-600 s) and, with a
    ``dead_letter_topic``, the dead-letter policy's ``max_delivery_attempts`` leaves
    headroom over the most attempts any job has (Pub/Sub allows 5-100). The topics must
    exist (``ensure_topic``). On Google Cloud, Pub/Sub's service agent also needs publish
    on the dead-letter topic and subscribe on this subscription (the Terraform module
    grants both).

    Raises:
        ConfigurationError: the jobs need more attempts than Pub/Sub can count (100).
        QueueNotFound: the topic or the dead-letter topic does not exist.
    """
    from google.api_core.exceptions import AlreadyExists

    settings = _app_settings(app)
    if dead_letter_topic is not None and settings.max_receives > _PUBSUB_ATTEMPTS[1]:
        raise ConfigurationError(
            f"subscription {subscription}: the jobs need {settings.max_receives} deliveries "
            f"({settings.attempts} attempts and headroom) and Pub/Sub counts at most "
            f"{_PUBSUB_ATTEMPTS[1]}; give the jobs fewer attempts")
    seconds = max(_ACK_DEADLINE[0], min(math.ceil(ack_deadline.total_seconds()), _ACK_DEADLINE[1]))
    minimum = _clamp(settings.min_backoff, _PUBSUB_BACKOFF)
    request: dict[str, Any] = {
        "name": f"projects/{project}/subscriptions/{subscription}",
        "topic": f"projects/{project}/topics/{topic}",
        "ack_deadline_seconds": seconds,
        "enable_message_ordering": ordering,
        "retry_policy": {"minimum_backoff": minimum,
                         "maximum_backoff": max(minimum, _clamp(settings.max_backoff, _PUBSUB_BACKOFF))},
    }
    if dead_letter_topic is not None:
        request["dead_letter_policy"] = {
            "dead_letter_topic": f"projects/{project}/topics/{dead_letter_topic}",
            "max_delivery_attempts": max(_PUBSUB_ATTEMPTS[0], settings.max_receives)}
    if push_endpoint is not None:
        request["push_config"] = {"push_endpoint": push_endpoint}
    _, subscriber = _pubsub_clients(emulator, object(), subscriber)
    where = emulator or "pubsub.googleapis.com"
    retry, limit = call_retry(timeout), timeout.total_seconds()
    with translated(f"creating subscription {request['name']} at {where}"):
        try:
            subscriber.create_subscription(request=request, retry=retry, timeout=limit)
        except AlreadyExists:
            # ordering cannot change on an existing subscription; the rest is brought up to date
            fields = ["ack_deadline_seconds", "retry_policy"]
            if "dead_letter_policy" in request:
                fields.append("dead_letter_policy")
            if "push_config" in request:
                fields.append("push_config")
            update = {k: v for k, v in request.items() if k in fields or k == "name"}
            subscriber.update_subscription(request={"subscription": update, "update_mask": {"paths": fields}},
                                           retry=retry, timeout=limit)
    return str(request["name"])


def ensure_queue(project: str, location: str, queue: str, *, app: App | None = None, paused: bool = False,
                 endpoint: str | None = None, client: Any = None, timeout: timedelta = DEFAULT_TIMEOUT) -> str:
    """Create or update a Cloud Tasks queue whose retry config honours the app's jobs.

    ``max_attempts`` is the jobs' receive limit with headroom (Cloud Tasks drops a task
    silently after its last attempt, so it must never be fewer than the jobs' attempts);
    the backoff spans the jobs' shortest initial and longest maximum backoff. A ``paused``
    queue never dispatches: that is how a dead-letter queue is kept.
    """
    from google.api_core.exceptions import AlreadyExists

    from .tasks import _client

    settings = _app_settings(app)
    parent = f"projects/{project}/locations/{location}"
    path = f"{parent}/queues/{queue}"
    retry_config = {"max_attempts": settings.max_receives, "min_backoff": settings.min_backoff,
                    "max_backoff": max(settings.min_backoff, settings.max_backoff), "max_doublings": 16}
    body: dict[str, Any] = {"name": path, "retry_config": retry_config}
    if paused:
        from google.cloud.tasks_v2 import Queue

        body["state"] = Queue.State.PAUSED
    where = endpoint or "cloudtasks.googleapis.com"
    retry, limit = call_retry(timeout), timeout.total_seconds()
    with translated(f"creating queue {path} at {where}"):
        tasks = client or _client(endpoint)
        try:
            tasks.create_queue(request={"parent": parent, "queue": body}, retry=retry, timeout=limit)
        except AlreadyExists:
            tasks.update_queue(request={"queue": {"name": path, "retry_config": retry_config},
                                        "update_mask": {"paths": ["retry_config"]}},
                               retry=retry, timeout=limit)
            if paused:
                tasks.pause_queue(request={"name": path}, retry=retry, timeout=limit)
    return path


def ensure(app: App) -> list[str]:
    """Create everything the app's backend URL names; return the paths made or updated.

    Pub/Sub: the topic, the dead-letter topic, the subscription (with the dead-letter and
    retry policies for the app's jobs) and the dead-letter subscription. Cloud Tasks: the
    queue, and its dead-letter destination (a paused queue, or a topic and subscription).
    """
    from .pubsub import PubSubBackend, TopicDeadLetters
    from .tasks import CloudTasksBackend, QueueDeadLetters

    backend = app.backend
    made: list[str] = []
    if isinstance(backend, PubSubBackend):
        clients = backend._clients
        emulator = clients._emulator
        publisher, subscriber = clients.publisher, clients.subscriber
        made.append(ensure_topic(backend.project, backend.topic, emulator=emulator, publisher=publisher))
        dead = backend._dead
        if dead is not None:
            made.append(_ensure_dead_topic(dead, emulator, publisher, subscriber))
        if backend.subscription_path is not None:
            made.append(ensure_subscription(
                backend.project, backend.topic, backend.subscription_path.rsplit("/", 1)[-1], app=app,
                dead_letter_topic=dead.topic.rsplit("/", 1)[-1] if dead is not None else None,
                ordering=backend._caps.fifo, emulator=emulator, subscriber=subscriber))
        return made
    if isinstance(backend, CloudTasksBackend):
        lazy = backend._client
        made.append(ensure_queue(backend.project, backend.location, backend.queue, app=app,
                                 endpoint=lazy._endpoint, client=lazy.get()))
        store = backend._dead
        if isinstance(store, QueueDeadLetters):
            _, location_part = store.queue_path.split("/locations/", 1)
            location, _, name = location_part.partition("/queues/")
            project = store.queue_path.split("/")[1]
            made.append(ensure_queue(project, location, name, paused=True, endpoint=store._client._endpoint,
                                     client=store._client.get()))
        elif isinstance(store, TopicDeadLetters):
            clients = store._clients
            made.append(_ensure_dead_topic(store, clients._emulator, clients.publisher, clients.subscriber))
        return made
    raise ConfigurationError(f"{backend!r} is not a Google backend: nothing to create here")


def _ensure_dead_topic(dead: Any, emulator: str | None, publisher: Any, subscriber: Any) -> str:
    """The dead-letter topic and the subscription dead letters are listed from."""
    project, topic = dead.topic.split("/")[1], dead.topic.rsplit("/", 1)[-1]
    path = ensure_topic(project, topic, emulator=emulator, publisher=publisher)
    if dead.subscription is not None:
        from google.api_core.exceptions import AlreadyExists

        with translated(f"creating subscription {dead.subscription}"):
            try:
                subscriber.create_subscription(request={"name": dead.subscription, "topic": path,
                                                        "ack_deadline_seconds": 60})
            except AlreadyExists:
                pass
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m cloudqueue_gcp.admin MODULE:APP``: create what the app's backend names."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or ":" not in args[0]:
        print("usage: python -m cloudqueue_gcp.admin MODULE:APP", file=sys.stderr)
        return 2
    from cloudqueue import CloudQueueError
    from cloudqueue.cli import load_app

    try:
        for path in ensure(load_app(args[0])):
            print(f"ready: {path}")
    except CloudQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
