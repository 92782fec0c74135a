"""terraform-vars: schedules and limits become the modules' variables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.tfvars import module_values, render_tfvars
from tests.conftest import missing_component


class Report(BaseModel):
    kind: str


def app_with(**job: object) -> cq.App:
    app = cq.App("shop")

    def nightly(payload: Report) -> None: ...

    app.job(name="nightly", **job)(nightly)  # type: ignore[call-overload]
    return app


def test_aws_schedules_carry_the_eventbridge_expression_zone_and_body() -> None:
    app = app_with(schedule=cq.Cron("0 3 * * 1-5", tz="Europe/Berlin", payload={"kind": "d"}, name="daily"))
    values = module_values(list(app.jobs.values()), "aws-sqs-lambda")
    entry = values["schedules"]["nightly-daily"]  # type: ignore[index]
    assert entry["expression"] == "cron(0 3 ? * 2-6 *)"
    assert entry["timezone"] == "Europe/Berlin"
    assert '"cqkey":"cron:nightly:daily:<aws.scheduler.scheduled-time>"' in entry["body"]
    assert "message_group_id" not in entry


def test_a_fifo_job_schedule_names_its_group() -> None:
    app = app_with(ordering_key="reports", schedule=cq.Cron("0 3 * * *", payload={"kind": "d"}, name="daily"))
    entry = module_values(list(app.jobs.values()), "aws-sqs-lambda")["schedules"]["nightly-daily"]  # type: ignore[index]
    assert entry["message_group_id"] == "reports"


def test_gcp_schedules_keep_the_unix_expression() -> None:
    app = app_with(schedule=cq.Cron("*/5 * * * *", tz="UTC", payload={"kind": "d"}, name="often"))
    for module in ("gcp-cloud-tasks", "gcp-pubsub"):
        entry = module_values(list(app.jobs.values()), module)["schedules"]["nightly-often"]  # type: ignore[index]
        assert entry["expression"] == "*/5 * * * *" and entry["timezone"] == "UTC"
        assert '"type":"nightly"' in entry["body"] and "cqkey" not in entry["body"]


def test_no_schedules_no_variable() -> None:
    for module in ("aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub"):
        assert "schedules" not in module_values(list(app_with().jobs.values()), module)


def test_limits_become_the_services_settings() -> None:
    app = app_with(rate_limit="30/m", concurrency=5)
    tasks = module_values(list(app.jobs.values()), "gcp-cloud-tasks")
    assert tasks["max_dispatches_per_second"] == 0.5 and tasks["max_concurrent_dispatches"] == 5
    aws = module_values(list(app.jobs.values()), "aws-sqs-lambda")
    assert aws["maximum_concurrency"] == 5
    assert "rate_limit: Lambda has no per-queue rate" in render_tfvars(app, "aws-sqs-lambda").replace("\n# ", " ")


def test_a_concurrency_of_one_is_lambdas_least_with_a_note_on_reserved_concurrency() -> None:
    app = app_with(concurrency=1)
    assert module_values(list(app.jobs.values()), "aws-sqs-lambda")["maximum_concurrency"] == 2
    text = render_tfvars(app, "aws-sqs-lambda").replace("\n# ", " ")
    assert "reserved_concurrent_executions = 1" in text


def test_a_shared_queue_sums_the_limits_or_leaves_them_to_the_worker() -> None:
    app = cq.App("shop")

    def job(payload: Report) -> None: ...

    app.job(name="a", rate_limit="2/s", concurrency=3)(job)
    app.job(name="b", rate_limit="1/s", concurrency=1)(job)
    tasks = module_values(list(app.jobs.values()), "gcp-cloud-tasks")
    assert tasks["max_dispatches_per_second"] == 3 and tasks["max_concurrent_dispatches"] == 4
    app.job(name="c")(job)  # no limits: the queue must not throttle it
    tasks = module_values(list(app.jobs.values()), "gcp-cloud-tasks")
    assert "max_dispatches_per_second" not in tasks and "max_concurrent_dispatches" not in tasks
    text = render_tfvars(app, "gcp-cloud-tasks").replace("\n# ", " ")
    assert "max_dispatches_per_second left unset: c share(s)" in text


def test_a_per_key_limit_has_no_service_setting() -> None:
    app = app_with(concurrency=cq.Concurrency(2, key=lambda p: p.kind))
    assert "max_concurrent_dispatches" not in module_values(list(app.jobs.values()), "gcp-cloud-tasks")
    assert "per-key concurrency limit" in render_tfvars(app, "gcp-cloud-tasks").replace("\n# ", " ")


def test_an_expression_eventbridge_cannot_carry_fails_terraform_vars_with_the_fix() -> None:
    app = app_with(schedule=cq.Cron("0 3 1 * mon", payload={"kind": "d"}))
    with pytest.raises(cq.ConfigurationError, match="split it into two schedules"):
        render_tfvars(app, "aws-sqs-lambda")


def test_the_printed_schedules_are_the_same_from_one_run_to_the_next() -> None:
    for module in ("aws-sqs-lambda", "gcp-cloud-tasks", "gcp-pubsub"):
        first = render_tfvars(app_with(schedule=cq.Cron("0 3 * * *", payload={"kind": "d"})), module)
        again = render_tfvars(app_with(schedule=cq.Cron("0 3 * * *", payload={"kind": "d"})), module)
        assert first == again


def test_with_several_queues_each_queue_gets_its_own_limits_and_schedules_name_their_queue() -> None:
    app = cq.App("shop", queues={"default": "memory://", "bulk": "memory://"})

    def job(payload: Report) -> None: ...

    app.job(name="nightly", queue="bulk", concurrency=3,
            schedule=cq.Cron("0 3 * * *", payload={"kind": "d"}, name="daily"))(job)
    app.job(name="charge", concurrency=7)(job)
    for module, key in (("aws-sqs-lambda", "maximum_concurrency"), ("gcp-cloud-tasks", "max_concurrent_dispatches")):
        values = parse_hcl(render_tfvars(app, module))
        assert values[key] == 7  # the default queue: charge only
        bulk = values["queues"]["bulk"]
        assert bulk[key] == 3 and "schedules" not in bulk
        assert values["schedules"]["nightly-daily"]["queue"] == "bulk"


def parse_hcl(text: str) -> dict[str, Any]:
    """tfvars read with python-hcl2, quotes taken off keys and strings."""
    try:
        import hcl2
    except ImportError:
        missing_component("python-hcl2", "pip install -r tests/terraform/requirements.txt")

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items() if not str(k).startswith("__")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value

    parsed: dict[str, Any] = clean(hcl2.loads(text))
    return parsed
