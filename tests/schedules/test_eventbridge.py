"""EventBridge Scheduler on moto server: the schedules terraform-vars writes, and one-time
schedules for long delays.

moto stores a schedule (expression, zone, target, input) and answers get_schedule with
it, but never fires one. So each test reads back what moto stored, fills in the slot as
EventBridge Scheduler would (``<aws.scheduler.scheduled-time>``), sends that body to the
queue on moto, and lets the library consume it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import module_values
from tests.conftest import missing_component

SLOT = "2026-11-29T02:00:00Z"
ROLE = "arn:aws:iam::123456789012:role/shop-cron"


class Report(BaseModel):
    kind: str


@pytest.fixture(scope="module")
def clients(moto_server: str) -> Iterator[dict[str, Any]]:
    try:
        import boto3
    except ImportError:
        missing_component("boto3", 'install the AWS adapter: pip install -e "adapters/aws[test]"')
    made = {name: boto3.client(name, endpoint_url=moto_server, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            for name in ("sqs", "scheduler")}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def queue(clients: dict[str, Any], moto_server: str) -> Iterator[dict[str, str]]:
    from cloudqueue_aws import ensure_queue

    pair = ensure_queue(f"cron-{uuid.uuid4().hex[:10]}", client=clients["sqs"])
    arn = clients["sqs"].get_queue_attributes(QueueUrl=pair.url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    yield {"url": pair.url, "arn": arn}
    for url in (pair.url, pair.dead_letter_url):
        clients["sqs"].delete_queue(QueueUrl=url)


def make_app(queue: dict[str, str], clients: dict[str, Any], **backend: Any) -> tuple[cq.App, list[Any], Any]:
    from cloudqueue_aws import SQSBackend

    app = cq.App("shop", backend=SQSBackend(queue["url"], client=clients["sqs"], **backend))
    ran: list[Any] = []

    @app.job(schedule=cq.Cron("0 3 * * *", tz="Europe/Berlin", payload={"kind": "nightly"}, name="daily"))
    def nightly(payload: Report, ctx: cq.JobContext) -> None:
        ran.append((payload.kind, ctx.job_id, ctx.idempotency_key, ctx.enqueued_at))

    return app, ran, nightly


def test_a_schedule_from_terraform_vars_delivers_its_slot_to_the_consumer(
        clients: dict[str, Any], queue: dict[str, str]) -> None:
    app, ran, _ = make_app(queue, clients)
    [(key, entry)] = module_values(list(app.jobs.values()), "aws-sqs-lambda")["schedules"].items()  # type: ignore[union-attr]
    assert key == "nightly-daily"
    name = f"shop-{key}-{uuid.uuid4().hex[:6]}"
    # what the module's aws_scheduler_schedule creates
    clients["scheduler"].create_schedule(
        Name=name, ScheduleExpression=entry["expression"], ScheduleExpressionTimezone=entry["timezone"],
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": queue["arn"], "RoleArn": ROLE, "Input": entry["body"]})
    stored = clients["scheduler"].get_schedule(Name=name)
    assert stored["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert stored["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert stored["Target"]["Arn"] == queue["arn"]
    body = stored["Target"]["Input"]
    assert "<aws.scheduler.scheduled-time>" in body

    # The firing of 03:00 Berlin (02:00 UTC), twice: EventBridge Scheduler retried it.
    fired = body.replace("<aws.scheduler.scheduled-time>", SLOT)
    for _ in range(2):
        clients["sqs"].send_message(QueueUrl=queue["url"], MessageBody=fired)
    report = app.drain()
    assert report.succeeded == 2 and report.dead_lettered == 0
    # One slot, one job: both deliveries carry its id and key (a consumer store, or a FIFO
    # queue's content-based deduplication, runs it once).
    assert {(kind, job_id, key) for kind, job_id, key, _ in ran} == {
        ("nightly", f"cron-nightly-daily-{SLOT}", f"cron:nightly:daily:{SLOT}")}
    assert ran[0][3] == datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)


def test_the_local_scheduler_and_eventbridge_give_a_slot_the_same_key(
        clients: dict[str, Any], queue: dict[str, str]) -> None:
    from cloudqueue.schedules import slot_key

    _, _, nightly = make_app(queue, clients)
    [entry] = module_values([nightly], "aws-sqs-lambda")["schedules"].values()  # type: ignore[union-attr]
    local_key = slot_key("nightly", nightly.schedules[0], datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc))
    assert f'"cqkey":"{local_key}"' in entry["body"].replace("<aws.scheduler.scheduled-time>", SLOT)


def test_a_long_delay_becomes_a_one_time_schedule(clients: dict[str, Any], queue: dict[str, str]) -> None:
    app, ran, nightly = make_app(queue, clients, long_delay="scheduler", scheduler_role_arn=ROLE,
                                 scheduler_client=clients["scheduler"])
    before = datetime.now(timezone.utc)
    job_id = nightly.enqueue({"kind": "later"}, delay=timedelta(days=2))
    # nothing went to the queue: no hops
    attrs = clients["sqs"].get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesDelayed"] == "0"
    [summary] = [s for s in clients["scheduler"].list_schedules()["Schedules"] if job_id[:20] in s["Name"]]
    stored = clients["scheduler"].get_schedule(Name=summary["Name"])
    at = datetime.strptime(stored["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)").replace(tzinfo=timezone.utc)
    assert timedelta(days=2) <= at - before.replace(microsecond=0) <= timedelta(days=2, minutes=1)
    assert stored["ScheduleExpressionTimezone"] == "UTC"
    assert stored["Target"]["Arn"] == queue["arn"] and stored["Target"]["RoleArn"] == ROLE
    assert stored.get("ActionAfterCompletion") in (None, "DELETE")

    # when it fires, the job runs (its cqnotbefore has passed by then)
    from cloudqueue.testing import FakeClock

    clients["sqs"].send_message(QueueUrl=queue["url"], MessageBody=stored["Target"]["Input"])
    app._clock = FakeClock(at + timedelta(seconds=1))
    report = app.drain()
    assert report.succeeded == 1 and ran[0][1] == job_id


def test_a_delay_under_the_threshold_still_hops_through_sqs(clients: dict[str, Any], queue: dict[str, str]) -> None:
    _, _, nightly = make_app(queue, clients, long_delay="scheduler", scheduler_role_arn=ROLE,
                             scheduler_client=clients["scheduler"])
    before = len(clients["scheduler"].list_schedules()["Schedules"])
    nightly.enqueue({"kind": "soon"}, delay=timedelta(minutes=30))
    attrs = clients["sqs"].get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert len(clients["scheduler"].list_schedules()["Schedules"]) == before


def test_long_delay_scheduler_needs_a_role(clients: dict[str, Any], queue: dict[str, str]) -> None:
    from cloudqueue_aws import SQSBackend

    with pytest.raises(cq.ConfigurationError, match="needs scheduler_role_arn"):
        SQSBackend(queue["url"], client=clients["sqs"], long_delay="scheduler")
    with pytest.raises(cq.ConfigurationError, match='must be "hop" or "scheduler"'):
        SQSBackend(queue["url"], client=clients["sqs"], long_delay="eventbridge")


def test_the_url_options_choose_the_scheduler() -> None:
    from cloudqueue_aws.backend import from_url

    backend = from_url(f"sqs://orders?region=us-east-1&long_delay=scheduler&scheduler_role_arn={ROLE}"
                       "&long_delay_threshold=7200")
    assert backend._scheduler is not None and backend._scheduler.threshold == timedelta(hours=2)


def test_hop_cost_per_delayed_day() -> None:
    from cloudqueue_aws.scheduler import hop_cost, scheduler_cost

    day = hop_cost(timedelta(days=1))
    assert day.hops == 95 and day.sqs_requests == 285
    assert round(day.dollars * 1e6) == 133  # $0.000133 a message a day, Lambda requests included
    assert hop_cost(timedelta(minutes=15)).hops == 0
    assert scheduler_cost().dollars == pytest.approx(1e-6)


def test_a_failed_create_schedule_says_what_was_sent(clients: dict[str, Any], queue: dict[str, str]) -> None:
    _, _, nightly = make_app(queue, clients, long_delay="scheduler", scheduler_role_arn=ROLE,
                             scheduler_client=clients["scheduler"], scheduler_group="no-such-group")
    with pytest.raises(cq.EnqueueError) as info:
        nightly.enqueue_many([nightly.message({"kind": "soon"}),
                              nightly.message({"kind": "later"}, delay=timedelta(days=2))])
    error = info.value
    assert error.sent == [] and len(error.not_sent) == 2
    assert "CreateSchedule" in str(error)
    # nothing reached the queue: the schedules are created before any batch is sent
    attrs = clients["sqs"].get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert [m.job_id for m in error.not_sent_messages] == error.not_sent
