"""Long delays by EventBridge Scheduler: one one-time schedule instead of hops.

SQS delays a message at most 15 minutes. A longer delay hops: the message is received
every 15 minutes, sent on with the time left and deleted, until it is due. Per delayed
day that is 95 hops: 95 receives, 95 sends and 95 deletes, 285 requests, and, under
Lambda, up to 95 invocations (``hop_cost``): $0.000133 a message a day at list prices.
With ``SQSBackend(long_delay="scheduler", scheduler_role_arn=...)`` (or ``sqs://orders?long_delay=scheduler&scheduler_role_arn=...``)
a delay over ``long_delay_threshold`` (1 hour by default) becomes one EventBridge
Scheduler schedule, ``at(<due time>)``, that sends the envelope to the queue once and
deletes itself: 1 request to create it, 1 invocation, whatever the delay.

The body keeps its ``cqnotbefore``, so a firing a minute early (the scheduler's
precision is one minute) still runs the job no sooner than due.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cloudqueue import ConfigurationError

from ._errors import translated

if TYPE_CHECKING:
    from cloudqueue.backends.base import OutgoingMessage

__all__ = ["DEFAULT_THRESHOLD", "LongDelayScheduler", "hop_cost"]

#: delays longer than this go through EventBridge Scheduler (shorter ones hop a few times)
DEFAULT_THRESHOLD = timedelta(hours=1)
#: SQS's longest per-message delay
SQS_MAX_DELAY = timedelta(minutes=15)
#: list prices in us-east-1 (2026): SQS standard requests after the free tier, EventBridge
#: Scheduler invocations after its free 14 million a month; a Lambda request.
SQS_PRICE_PER_MILLION = 0.40
SCHEDULER_PRICE_PER_MILLION = 1.00
LAMBDA_REQUEST_PRICE_PER_MILLION = 0.20
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$")


@dataclass(frozen=True)
class DelayCost:
    """What one delayed message costs beyond its own send, receive and delete."""

    hops: int
    sqs_requests: int
    lambda_invocations: int
    dollars: float


def hop_cost(delay: timedelta) -> DelayCost:
    """The extra cost of hopping one message over ``delay`` on a standard SQS queue.

    Each hop is one receive, one send and one delete, and (consumed by Lambda) up to one
    invocation when the batch holds only it.
    """
    hops = max(0, math.ceil(delay / SQS_MAX_DELAY) - 1)
    requests = 3 * hops
    dollars = requests * SQS_PRICE_PER_MILLION / 1e6 + hops * LAMBDA_REQUEST_PRICE_PER_MILLION / 1e6
    return DelayCost(hops=hops, sqs_requests=requests, lambda_invocations=hops, dollars=dollars)


def scheduler_cost() -> DelayCost:
    """The extra cost of a one-time schedule: one invocation (CreateSchedule is not billed)."""
    return DelayCost(hops=0, sqs_requests=0, lambda_invocations=0,
                     dollars=SCHEDULER_PRICE_PER_MILLION / 1e6)


class LongDelayScheduler:
    """Creates the one-time schedules of one queue.

    Args:
        queue_arn: the queue the schedules send to.
        role_arn: the role EventBridge Scheduler sends with (it needs sqs:SendMessage on
            the queue; the aws-sqs-lambda module's ``scheduler_role_arn`` output).
        threshold: delays longer than this are scheduled; shorter ones hop.
        group: the schedule group.
        client: a boto3 ``scheduler`` client (made on first use).
    """

    def __init__(self, *, role_arn: str, threshold: timedelta = DEFAULT_THRESHOLD,
                 group: str = "default", client: Any = None, region: str | None = None,
                 endpoint_url: str | None = None) -> None:
        if not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn):
            raise ConfigurationError(
                f"long_delay=\"scheduler\" needs scheduler_role_arn, the IAM role EventBridge Scheduler "
                f"sends with (arn:aws:iam::<account>:role/<name>), got {role_arn!r}; the aws-sqs-lambda "
                "module's scheduler_role_arn output (long_delay_scheduler = true) is one")
        if threshold < SQS_MAX_DELAY:
            raise ConfigurationError(f"long_delay_threshold must be at least {SQS_MAX_DELAY} (shorter "
                                     f"delays need no hop), got {threshold}")
        self.role_arn = role_arn
        self.threshold = threshold
        self.group = group
        self._client = client
        self._region = region
        self._endpoint_url = endpoint_url

    @property
    def client(self) -> Any:
        if self._client is None:
            from ._client import INSTALL_HINT

            try:
                import boto3
            except ImportError as exc:
                raise ConfigurationError(f"long delays by scheduler need boto3: {INSTALL_HINT}") from exc
            self._client = boto3.client("scheduler", region_name=self._region,
                                        endpoint_url=self._endpoint_url)
        return self._client

    def wants(self, due: datetime, now: datetime) -> bool:
        """Whether a message due at ``due`` should be scheduled rather than hop."""
        return due - now > self.threshold

    def schedule(self, *, queue_arn: str, body: str, due: datetime, job_id: str,
                 group_id: str | None = None) -> str:
        """Create the one-time schedule that sends ``body`` to the queue at ``due``; return
        its name (one name per job id and due time: a repeated call is refused by the
        service as a conflict, which counts as done)."""
        stamp = due.astimezone(timezone.utc).replace(microsecond=0)
        if due.microsecond:  # at() takes whole seconds: never fire before due
            stamp += timedelta(seconds=1)
        name = _schedule_name(job_id, stamp)
        target: dict[str, Any] = {"Arn": queue_arn, "RoleArn": self.role_arn, "Input": body}
        if group_id is not None:
            target["SqsParameters"] = {"MessageGroupId": group_id}
        with translated(f"CreateSchedule({name})"):
            try:
                self.client.create_schedule(
                    Name=name, GroupName=self.group,
                    ScheduleExpression=f"at({stamp.strftime('%Y-%m-%dT%H:%M:%S')})",
                    ScheduleExpressionTimezone="UTC", FlexibleTimeWindow={"Mode": "OFF"},
                    ActionAfterCompletion="DELETE", Target=target,
                    Description=f"cloudqueue long delay of job {job_id}")
            except Exception as exc:
                if _code(exc) != "ConflictException":
                    raise
        return name

    def schedule_message(self, out: OutgoingMessage, *, queue_arn: str, due: datetime,
                         group_id: str | None = None) -> str:
        return self.schedule(queue_arn=queue_arn, body=out.body.decode(), due=due, job_id=out.job_id,
                             group_id=group_id)


def _schedule_name(job_id: str, due: datetime) -> str:
    # names: 1-64 of [0-9a-zA-Z-_.]; a job id may hold anything
    safe = re.sub(r"[^0-9A-Za-z_.-]", "-", job_id)[:40]
    digest = hashlib.sha256(f"{job_id}\x00{due.isoformat()}".encode()).hexdigest()[:12]
    return f"cq-{safe}-{digest}"[:64]


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def due_time(body: bytes) -> datetime | None:
    """The ``cqnotbefore`` of an envelope, if it has one."""
    import json

    from cloudqueue.clock import parse_time

    try:
        text = json.loads(body).get("cqnotbefore")
    except (ValueError, AttributeError):
        return None
    return parse_time(text) if isinstance(text, str) else None
