"""`cloudqueue terraform-vars`: the Terraform values that must agree with the jobs."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

import cloudqueue as cq
from cloudqueue.cli import cli
from cloudqueue.retry import max_receives_for
from cloudqueue.tfvars import MODULES, render_tfvars

ROOT = Path(__file__).resolve().parents[2]


class Order(BaseModel):
    order_id: str


def comments(text: str) -> str:
    """The comment lines of a tfvars text joined into one line (they are wrapped)."""
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def tfvars(text: str) -> dict[str, str]:
    """The assignments of a tfvars text, comments left out."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def make_app(*retries: cq.Retry, ordering: bool = False) -> cq.App:
    app = cq.App("shop")
    for index, retry in enumerate(retries):
        def job(payload: Order) -> None: ...
        app.job(name=f"job{index}", retry=retry,
                ordering_key="orders" if ordering and index == 0 else None)(job)
    return app


def test_max_receive_count_keeps_headroom_over_the_jobs_attempts() -> None:
    text = render_tfvars(make_app(cq.Retry(attempts=4)), "aws-sqs-lambda")
    # 4 attempts + max(4, 5): receives that never start a job must not exhaust the count
    assert tfvars(text) == {"max_receive_count": "9", "fifo": "false", "allow_send_to_queue": "true"}
    assert "max_receive_count = 4 attempts + 5 headroom" in comments(text)
    assert "differ" not in text


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 6, 10, 37, 100, 500])
def test_the_receive_limits_printed_follow_the_core_rule(attempts: int) -> None:
    app = make_app(cq.Retry(attempts=attempts))
    expected = cq.Retry(attempts=attempts).max_receives
    assert expected == max_receives_for(attempts)
    assert tfvars(render_tfvars(app, "aws-sqs-lambda"))["max_receive_count"] == str(expected)
    if attempts <= 100:  # Pub/Sub's limit
        pubsub = tfvars(render_tfvars(app, "gcp-pubsub"))["max_delivery_attempts"]
        assert pubsub == str(min(expected, 100))


def test_the_receive_limit_is_capped_at_the_service_maximum_with_a_note() -> None:
    text = render_tfvars(make_app(cq.Retry(attempts=700)), "aws-sqs-lambda")
    assert tfvars(text)["max_receive_count"] == "1000"
    assert "SQS allows at most 1000: max_receive_count is capped there" in comments(text)
    text = render_tfvars(make_app(cq.Retry(attempts=60)), "gcp-pubsub")
    assert tfvars(text)["max_delivery_attempts"] == "100"
    assert "leaving 40 receive(s) of headroom" in comments(text)


def test_more_attempts_than_sqs_counts_is_a_configuration_error_naming_the_fix() -> None:
    with pytest.raises(cq.ConfigurationError, match=r"at most 1000: lower that job's cq.Retry"):
        render_tfvars(make_app(cq.Retry(attempts=1001)), "aws-sqs-lambda")


def test_a_standard_queue_lets_the_function_send_to_it_because_long_delays_hop() -> None:
    text = render_tfvars(make_app(cq.Retry()), "aws-sqs-lambda")
    assert tfvars(text)["allow_send_to_queue"] == "true"
    assert "delay over 15 minutes, which hops through the queue" in comments(text)


def test_a_fifo_queue_has_nothing_that_hops() -> None:
    text = render_tfvars(make_app(cq.Retry(), ordering=True), "aws-sqs-lambda")
    assert tfvars(text)["allow_send_to_queue"] == "false"
    assert "takes no per-message delay, so nothing hops" in comments(text)


def test_differing_attempts_take_the_largest_and_say_so() -> None:
    text = render_tfvars(make_app(cq.Retry(attempts=3), cq.Retry(attempts=7)), "aws-sqs-lambda")
    assert tfvars(text)["max_receive_count"] == "14"
    assert "The jobs' attempts differ (3, 7): max_receive_count follows the largest (7)." in comments(text)


def test_an_ordering_key_asks_for_a_fifo_queue() -> None:
    text = render_tfvars(make_app(cq.Retry(), cq.Retry(), ordering=True), "aws-sqs-lambda")
    assert tfvars(text)["fifo"] == "true"
    assert "job0 use an ordering_key" in comments(text)


def test_cloud_tasks_retry_config_follows_the_jobs_backoff() -> None:
    retry = cq.Retry(attempts=6, backoff=cq.Backoff.exponential(
        initial=timedelta(seconds=2), maximum=timedelta(seconds=64)))
    values = tfvars(render_tfvars(make_app(retry), "gcp-cloud-tasks"))
    # 2 s doubled 5 times reaches 64 s
    assert values == {"max_attempts": "6", "min_backoff_seconds": "2", "max_backoff_seconds": "64",
                      "max_doublings": "5"}


def test_a_fixed_backoff_never_doubles_on_cloud_tasks() -> None:
    retry = cq.Retry(attempts=2, backoff=cq.Backoff.fixed(timedelta(milliseconds=1500)))
    values = tfvars(render_tfvars(make_app(retry), "gcp-cloud-tasks"))
    assert values["min_backoff_seconds"] == values["max_backoff_seconds"] == "1.5"
    assert values["max_doublings"] == "0"


def test_pubsub_delivery_attempts_keep_headroom_and_stay_within_pubsubs_minimum() -> None:
    text = render_tfvars(make_app(cq.Retry(attempts=1)), "gcp-pubsub")
    assert int(tfvars(text)["max_delivery_attempts"]) == 6  # Pub/Sub needs at least 5
    assert "max_delivery_attempts = 1 attempts + 5 headroom" in comments(text)


def test_cloud_tasks_max_attempts_is_the_jobs_attempts_exactly() -> None:
    # Cloud Tasks has no dead-letter queue: its max_attempts only drops tasks, and the shim
    # writes the dead letter on the job's own last attempt.
    assert tfvars(render_tfvars(make_app(cq.Retry(attempts=4)), "gcp-cloud-tasks"))["max_attempts"] == "4"


def test_pubsub_backoff_is_capped_at_ten_minutes() -> None:
    retry = cq.Retry(attempts=5, backoff=cq.Backoff.exponential(maximum=timedelta(hours=1)))
    text = render_tfvars(make_app(retry), "gcp-pubsub")
    assert tfvars(text)["maximum_backoff_seconds"] == "600"
    assert "capped at 600 s" in comments(text)


def test_more_attempts_than_pubsub_allows_is_a_configuration_error() -> None:
    with pytest.raises(cq.ConfigurationError, match="at most 100"):
        render_tfvars(make_app(cq.Retry(attempts=101)), "gcp-pubsub")


def test_an_unknown_module_names_the_known_ones() -> None:
    with pytest.raises(cq.ConfigurationError, match="aws-sqs-lambda, gcp-cloud-tasks, gcp-pubsub"):
        render_tfvars(make_app(cq.Retry()), "azure")


def test_an_app_without_jobs_is_a_configuration_error() -> None:
    with pytest.raises(cq.ConfigurationError, match="no jobs"):
        render_tfvars(cq.App("empty"), "gcp-pubsub")


@pytest.mark.parametrize("module", MODULES)
def test_every_variable_rendered_is_declared_by_the_module(module: str) -> None:
    declared = set(re.findall(r'^variable "(\w+)"',
                              (ROOT / "terraform" / module / "variables.tf").read_text(), re.M))
    rendered = tfvars(render_tfvars(make_app(cq.Retry(attempts=5)), module))
    assert set(rendered) <= declared


@pytest.mark.parametrize(("module", "example"), [("aws-sqs-lambda", "aws"),
                                                 ("gcp-cloud-tasks", "gcp-cloud-tasks"),
                                                 ("gcp-pubsub", "gcp-pubsub")])
def test_the_examples_carry_the_orders_sample_tfvars_as_the_command_prints_them(
        module: str, example: str) -> None:
    result = CliRunner().invoke(cli, ["terraform-vars", "samples.orders.jobs:app", module],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    committed = ROOT / "terraform" / "examples" / example / "orders.auto.tfvars"
    assert committed.read_text() == result.output, (
        f"regenerate it: cloudqueue terraform-vars samples.orders.jobs:app {module} > {committed}")


def test_the_command_rejects_a_module_it_does_not_know() -> None:
    result = CliRunner().invoke(cli, ["terraform-vars", "samples.orders.jobs:app", "azure"])
    assert result.exit_code == 1
    assert "aws-sqs-lambda" in result.output
