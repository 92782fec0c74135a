"""A Cloud Tasks server for tests, on google-cloud-tasks' own request and response types.

It speaks the real gRPC service (``google.cloud.tasks.v2.CloudTasks``) on a loopback port
and keeps queues and tasks in memory: named tasks (ALREADY_EXISTS, also for a name that
ran or was deleted), NOT_FOUND, paused queues, ``schedule_time``, and ``retry_config``
(backoff from min_backoff doubling max_doublings times up to max_backoff, and
max_attempts). Due tasks are dispatched as real HTTP requests with Cloud Tasks' headers
and an OIDC token from ``OidcIssuer`` — when the test calls ``dispatch_due`` (so a test
controls when time-dependent things happen), or continuously after ``run_in_background``.
"""

from __future__ import annotations

import itertools
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.protobuf import empty_pb2

from tests.conftest import free_port

from .oidc_issuer import OidcIssuer

SERVICE = "google.cloud.tasks.v2.CloudTasks"
DEFAULT_RETRY = {"max_attempts": 100, "min_backoff": timedelta(seconds=0.1),
                 "max_backoff": timedelta(hours=1), "max_doublings": 16}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Queue:
    def __init__(self, queue: tasks_v2.Queue) -> None:
        self.queue = queue
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.dispatching: set[str] = set()


class CloudTasksServer:
    """The fake service; ``endpoint`` is its HOST:PORT."""

    def __init__(self, issuer: OidcIssuer) -> None:
        self.issuer = issuer
        self._lock = threading.RLock()
        self._queues: dict[str, _Queue] = {}
        self._used_names: set[str] = set()
        self._ids = itertools.count(1)
        self.requests: list[dict[str, str]] = []  # headers of every dispatch, for inspection
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handlers = {name: grpc.unary_unary_rpc_method_handler(
            self._wrap(fn), request_deserializer=req.deserialize, response_serializer=resp)
            for name, (fn, req, resp) in self._methods().items()}
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        port = free_port()
        self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"127.0.0.1:{port}"
        self._server.start()
        self._background: threading.Thread | None = None
        self._stop = threading.Event()

    # -- gRPC plumbing ---------------------------------------------------------------------
    def _methods(self) -> dict[str, tuple[Any, Any, Any]]:
        t = tasks_v2
        empty = empty_pb2.Empty.SerializeToString
        return {
            "CreateQueue": (self.create_queue, t.CreateQueueRequest, t.Queue.serialize),
            "GetQueue": (self.get_queue, t.GetQueueRequest, t.Queue.serialize),
            "UpdateQueue": (self.update_queue, t.UpdateQueueRequest, t.Queue.serialize),
            "DeleteQueue": (self.delete_queue, t.DeleteQueueRequest, empty),
            "PauseQueue": (self.pause_queue, t.PauseQueueRequest, t.Queue.serialize),
            "ResumeQueue": (self.resume_queue, t.ResumeQueueRequest, t.Queue.serialize),
            "PurgeQueue": (self.purge_queue, t.PurgeQueueRequest, t.Queue.serialize),
            "CreateTask": (self.create_task, t.CreateTaskRequest, t.Task.serialize),
            "GetTask": (self.get_task, t.GetTaskRequest, t.Task.serialize),
            "ListTasks": (self.list_tasks, t.ListTasksRequest, t.ListTasksResponse.serialize),
            "DeleteTask": (self.delete_task, t.DeleteTaskRequest, empty),
        }

    @staticmethod
    def _wrap(fn: Any) -> Any:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return fn(request)
            except _Abort as exc:
                context.abort(exc.code, str(exc))
        return call

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Queue does not exist: {name}")
        return queue

    # -- queues --------------------------------------------------------------------------
    def create_queue(self, request: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        with self._lock:
            queue = tasks_v2.Queue(request.queue)
            if queue.name in self._queues:
                raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"Queue already exists: {queue.name}")
            retry = tasks_v2.RetryConfig(DEFAULT_RETRY)
            if "retry_config" in queue:
                given = queue.retry_config
                for field in ("max_attempts", "min_backoff", "max_backoff", "max_doublings"):
                    if field in given:
                        setattr(retry, field, getattr(given, field))
            queue.retry_config = retry
            if queue.state == tasks_v2.Queue.State.STATE_UNSPECIFIED:
                queue.state = tasks_v2.Queue.State.RUNNING
            self._queues[queue.name] = _Queue(queue)
            return queue

    def get_queue(self, request: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        with self._lock:
            return self._queue(request.name).queue

    def update_queue(self, request: tasks_v2.UpdateQueueRequest) -> tasks_v2.Queue:
        """Set the fields the mask names (Cloud Tasks' UpdateQueue; retry_config and rate_limits)."""
        with self._lock:
            queue = self._queue(request.queue.name).queue
            for path in request.update_mask.paths:
                if path not in ("retry_config", "rate_limits", "stackdriver_logging_config"):
                    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot update {path}")
                setattr(queue, path, getattr(request.queue, path))
            return queue

    def delete_queue(self, request: tasks_v2.DeleteQueueRequest) -> empty_pb2.Empty:
        with self._lock:
            self._queue(request.name)
            del self._queues[request.name]
            return empty_pb2.Empty()

    def _set_state(self, name: str, state: tasks_v2.Queue.State) -> tasks_v2.Queue:
        with self._lock:
            queue = self._queue(name)
            queue.queue.state = state
            return queue.queue

    def pause_queue(self, request: tasks_v2.PauseQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.PAUSED)

    def resume_queue(self, request: tasks_v2.ResumeQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.RUNNING)

    def purge_queue(self, request: tasks_v2.PurgeQueueRequest) -> tasks_v2.Queue:
        with self._lock:
            queue = self._queue(request.name)
            self._used_names.update(queue.tasks)
            queue.tasks.clear()
            return queue.queue

    def drop_project(self, project: str) -> None:
        """Forget every queue of a project (a test's teardown)."""
        with self._lock:
            for name in [n for n in self._queues if n.startswith(f"projects/{project}/")]:
                del self._queues[name]

    # -- tasks ---------------------------------------------------------------------------
    @staticmethod
    def _view(task: tasks_v2.Task, view: int) -> tasks_v2.Task:
        out = tasks_v2.Task(task)
        if view != tasks_v2.Task.View.FULL:
            out.http_request.body = b""
            out.view = tasks_v2.Task.View.BASIC
        else:
            out.view = tasks_v2.Task.View.FULL
        return out

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        with self._lock:
            queue = self._queue(request.parent)
            task = tasks_v2.Task(request.task)
            if task.name:
                if not task.name.startswith(request.parent + "/tasks/"):
                    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"task name {task.name} is not in {request.parent}")
                if task.name in queue.tasks or task.name in self._used_names:
                    raise _Abort(grpc.StatusCode.ALREADY_EXISTS, "Requested entity already exists")
            else:
                task.name = f"{request.parent}/tasks/{next(self._ids):020d}"
            if "http_request" not in task or not task.http_request.url:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "only HTTP-target tasks are supported here")
            now = _now()
            task.create_time = now
            if "schedule_time" not in task:
                task.schedule_time = now
            if "dispatch_deadline" not in task:
                task.dispatch_deadline = timedelta(minutes=10)
            task.dispatch_count = 0
            task.response_count = 0
            queue.tasks[task.name] = task
            return self._view(task, request.response_view)

    def _task(self, name: str) -> tuple[_Queue, tasks_v2.Task]:
        queue_name = name.rsplit("/tasks/", 1)[0]
        queue = self._queue(queue_name)
        task = queue.tasks.get(name)
        if task is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Task does not exist: {name}")
        return queue, task

    def get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        with self._lock:
            return self._view(self._task(request.name)[1], request.response_view)

    def list_tasks(self, request: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        with self._lock:
            tasks = list(self._queue(request.parent).tasks.values())
            start = int(request.page_token or 0)
            size = request.page_size or 1000
            page = tasks[start:start + size]
            token = str(start + size) if start + size < len(tasks) else ""
            return tasks_v2.ListTasksResponse(tasks=[self._view(t, request.response_view) for t in page],
                                              next_page_token=token)

    def delete_task(self, request: tasks_v2.DeleteTaskRequest) -> empty_pb2.Empty:
        with self._lock:
            queue, task = self._task(request.name)
            del queue.tasks[task.name]
            self._used_names.add(task.name)
            return empty_pb2.Empty()

    # -- dispatching ---------------------------------------------------------------------
    def _due(self, only: Collection[str] | None = None) -> list[tuple[_Queue, tasks_v2.Task]]:
        now = _now()
        with self._lock:
            due = []
            for queue in self._queues.values():
                if queue.queue.state != tasks_v2.Queue.State.RUNNING:
                    continue
                if only is not None and queue.queue.name not in only:
                    continue
                for task in queue.tasks.values():
                    if task.name not in queue.dispatching and _aware(task.schedule_time) <= now:
                        queue.dispatching.add(task.name)
                        due.append((queue, task))
            return due

    @staticmethod
    def backoff(retry: tasks_v2.RetryConfig, retries: int) -> timedelta:
        """The wait before retry number ``retries`` (1-based), as Cloud Tasks documents it."""
        minimum, maximum = retry.min_backoff, retry.max_backoff
        doublings = retry.max_doublings
        if retries - 1 < doublings:
            wait = minimum * (2 ** (retries - 1))
        else:
            wait = minimum * (2 ** doublings) * (retries - doublings)
        return min(wait, maximum)

    def _headers(self, queue: _Queue, task: tasks_v2.Task) -> dict[str, str]:
        request = task.http_request
        headers = dict(request.headers)
        eta = _aware(task.schedule_time).timestamp()
        headers.update({
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": queue.queue.name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskRetryCount": str(task.dispatch_count),
            "X-CloudTasks-TaskExecutionCount": str(task.response_count),
            "X-CloudTasks-TaskETA": f"{eta:.6f}",
        })
        if task.dispatch_count:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(task.last_attempt.response_status.code or 0)
            headers["X-CloudTasks-TaskRetryReason"] = "HTTP_ERROR"
        if "oidc_token" in request and request.oidc_token.service_account_email:
            audience = request.oidc_token.audience or request.url
            token = self.issuer.token(audience, request.oidc_token.service_account_email)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _dispatch(self, queue: _Queue, task: tasks_v2.Task, url: str | None) -> int:
        headers = self._headers(queue, task)
        with self._lock:
            self.requests.append(headers)
            attempt = tasks_v2.Attempt(schedule_time=task.schedule_time, dispatch_time=_now())
            task.last_attempt = attempt
            if "first_attempt" not in task:
                task.first_attempt = attempt
        http = urllib.request.Request(url or task.http_request.url, data=bytes(task.http_request.body),
                                      headers=headers, method="POST")
        status = 0
        try:
            with urllib.request.urlopen(http, timeout=task.dispatch_deadline.total_seconds()) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0  # unreachable or timed out: a failed attempt that got no response
        with self._lock:
            queue.dispatching.discard(task.name)
            task.last_attempt.response_time = _now()
            task.last_attempt.response_status = {"code": status, "message": str(status)}
            if status:
                task.response_count += 1
            if 200 <= status < 300:
                queue.tasks.pop(task.name, None)
                self._used_names.add(task.name)
                return status
            task.dispatch_count += 1
            retry = queue.queue.retry_config
            if 0 < retry.max_attempts <= task.dispatch_count:
                queue.tasks.pop(task.name, None)  # Cloud Tasks gives up and drops the task
                self._used_names.add(task.name)
            else:
                task.schedule_time = _now() + self.backoff(retry, task.dispatch_count)
        return status

    def dispatch_due(self, *, url: str | None = None, repeat: bool = True,
                     queues: Collection[str] | None = None) -> list[int]:
        """Dispatch every due task (to ``url`` instead of its own, if given); return the statuses.

        With ``repeat``, tasks that become due while dispatching are dispatched too; with
        ``queues`` (queue paths), only those queues' tasks.
        """
        statuses: list[int] = []
        while True:
            due = self._due(queues)
            if not due:
                return statuses
            for queue, task in due:
                statuses.append(self._dispatch(queue, task, url))
            if not repeat:
                return statuses

    def run_in_background(self) -> None:
        """Dispatch continuously, as the real service does."""
        def loop() -> None:
            while not self._stop.wait(0.05):
                self.dispatch_due(repeat=False)

        self._stop.clear()
        self._background = threading.Thread(target=loop, name="cloud-tasks-dispatch", daemon=True)
        self._background.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._background is not None:
            self._background.join(timeout=30)
            self._background = None

    def wait_until_empty(self, queue_name: str, timeout: float = 30) -> bool:
        """Wait until the queue holds no task (background mode); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queue(queue_name).tasks:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.stop_background()
        self._server.stop(grace=None)
