"""Cloud Scheduler firings through the function shims (functions-framework).

A Cloud Scheduler job sends the same body at every firing. Posted to the function as an
HTTP target it adds ``X-CloudScheduler-ScheduleTime`` (unix-cron jobs), and the shim puts
that slot into the schedule's fixed body: the slot's job id, time and idempotency key are
the local scheduler's. Through a Cloud Task (the gcp-cloud-tasks module creates one per
firing) or a Pub/Sub message (gcp-pubsub) the function sees no slot time, and each firing
runs as a new job with the body's constant id and no key.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import cloudqueue_gcp
import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.schedules import slot_key
from cloudqueue.tfvars import module_values

from . import routing
from .test_push_formats import _post

pytestmark = pytest.mark.timeout(120)

SLOT = "2026-11-29T02:00:00Z"
NEXT_SLOT = "2026-11-30T02:00:00Z"
SCHEDULER_JOB = "projects/shop-prod/locations/europe-west1/jobs/shop-nightly-daily"


class Report(BaseModel):
    kind: str


def nightly_app(ran: list[Any], *, store: str | None = None, fail: bool = False) -> tuple[cq.App, Any]:
    app = cq.App("shop", backend="memory://", store=store)

    @app.job(schedule=cq.Cron("0 3 * * *", tz="Europe/Berlin", payload={"kind": "nightly"}, name="daily"))
    def nightly(payload: Report, ctx: cq.JobContext) -> None:
        ran.append((payload.kind, ctx.job_id, ctx.idempotency_key, ctx.enqueued_at))
        if fail:
            raise RuntimeError("report service down")

    return app, nightly


def fixed_body(nightly: Any, module: str) -> bytes:
    """The body the module's Cloud Scheduler job sends, as terraform-vars writes it."""
    [entry] = module_values([nightly], module)["schedules"].values()  # type: ignore[union-attr]
    return str(entry["body"]).encode()


def fire(url: str, body: bytes, slot: str | None, **extra: str) -> int:
    """What a Cloud Scheduler HTTP target posts to the function at one firing."""
    headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler",
               "X-CloudScheduler": "true", "X-CloudScheduler-JobName": SCHEDULER_JOB, **extra}
    if slot is not None:
        headers["X-CloudScheduler-ScheduleTime"] = slot
    return _post(url, body, headers)


def test_an_http_firing_gets_the_slot_key_the_local_scheduler_gives_and_a_store_runs_it_once(
        http_function: Any) -> None:
    ran: list[Any] = []
    app, nightly = nightly_app(ran, store="memory://")
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = fixed_body(nightly, "gcp-cloud-tasks")

    # the 03:00 Berlin slot, fired twice (Cloud Scheduler retried it), then the next day's
    assert [fire(http_function.url, body, slot) for slot in (SLOT, SLOT, NEXT_SLOT)] == [200, 200, 200]

    local = slot_key("nightly", nightly.schedules[0], datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc))
    assert local == f"cron:nightly:daily:{SLOT}"
    assert ran == [
        ("nightly", f"cron-nightly-daily-{SLOT}", local, datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)),
        ("nightly", f"cron-nightly-daily-{NEXT_SLOT}", f"cron:nightly:daily:{NEXT_SLOT}",
         datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)),
    ]
    record = app.store_record(idempotency_key=local)
    assert record is not None and record.runs == 1
    app.close()


def test_without_a_store_both_copies_of_a_slot_run_as_the_same_job(http_function: Any) -> None:
    ran: list[Any] = []
    app, nightly = nightly_app(ran)
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = fixed_body(nightly, "gcp-cloud-tasks")
    # fractional seconds, as RFC 3339 allows: the slot is the whole second
    assert fire(http_function.url, body, "2026-11-29T02:00:00.000Z") == 200
    assert fire(http_function.url, body, SLOT) == 200
    assert {(job_id, key) for _, job_id, key, _ in ran} == {
        (f"cron-nightly-daily-{SLOT}", f"cron:nightly:daily:{SLOT}")}
    assert len(ran) == 2
    app.close()


def test_a_failing_slot_is_answered_500_for_cloud_scheduler_to_retry_then_runs_once(http_function: Any) -> None:
    ran: list[Any] = []
    app, nightly = nightly_app(ran, store="memory://", fail=True)
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = fixed_body(nightly, "gcp-cloud-tasks")
    assert fire(http_function.url, body, SLOT) == 500
    record = app.store_record(idempotency_key=f"cron:nightly:daily:{SLOT}")
    assert record is not None and record.runs == 1  # released, its run counted
    app.close()


def test_a_schedule_time_that_is_not_a_time_is_refused_and_nothing_runs(http_function: Any) -> None:
    ran: list[Any] = []
    app, nightly = nightly_app(ran)
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    assert fire(http_function.url, fixed_body(nightly, "gcp-cloud-tasks"), "yesterday") == 400
    assert fire(http_function.url, fixed_body(nightly, "gcp-cloud-tasks"), "2026-11-29T02:00:00") == 400
    assert ran == []
    app.close()


def test_a_body_that_is_not_a_schedules_runs_as_it_is(http_function: Any, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[Any] = []
    app, nightly = nightly_app(ran)
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    message = nightly.message(Report(kind="by hand"), idempotency_key="by-hand-1")
    assert fire(http_function.url, message.body, SLOT) == 200
    assert [(kind, key) for kind, _, key, _ in ran] == [("by hand", "by-hand-1")]
    app.close()


def test_a_firing_through_a_cloud_task_has_no_slot_time_and_runs_every_time(http_function: Any) -> None:
    # gcp-cloud-tasks: Cloud Scheduler calls tasks.create, so its headers stop at the Tasks
    # API; the task it creates reaches the function with X-CloudTasks-* headers only
    ran: list[Any] = []
    app, nightly = nightly_app(ran, store="memory://")
    routing.set_http(cloudqueue_gcp.http_handler(app, verify=False))
    body = fixed_body(nightly, "gcp-cloud-tasks")
    for task in ("t-1", "t-2"):  # two firings: two tasks
        headers = {"Content-Type": "application/json", "X-CloudTasks-QueueName": "shop",
                   "X-CloudTasks-TaskName": task, "X-CloudTasks-TaskRetryCount": "0"}
        assert _post(http_function.url, body, headers) == 200
    assert [(job_id, key) for _, job_id, key, _ in ran] == [("cron-nightly-daily", None)] * 2
    app.close()


def test_a_firing_through_pubsub_has_no_slot_time_and_runs_every_time(cloudevent_function: Any) -> None:
    # gcp-pubsub: Cloud Scheduler publishes the body with no attributes of its own; the
    # message's publish time is when it fired, not the slot
    ran: list[Any] = []
    app, nightly = nightly_app(ran, store="memory://")
    routing.set_cloudevent(cloudqueue_gcp.cloudevent_handler(app, verify=False))
    data = base64.b64encode(fixed_body(nightly, "gcp-pubsub")).decode()
    for n, published in enumerate(("2026-11-29T02:00:01.204Z", "2026-11-30T02:00:00.871Z")):
        push = {"message": {"data": data, "messageId": f"m-{n}", "publishTime": published},
                "subscription": "projects/shop-prod/subscriptions/shop", "deliveryAttempt": 1}
        assert _post(cloudevent_function.url, json.dumps(push).encode(), {"Content-Type": "application/json"}) == 200
    assert [(job_id, key) for _, job_id, key, _ in ran] == [("cron-nightly-daily", None)] * 2
    app.close()
