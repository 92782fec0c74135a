"""The modules are laid out as the library expects, read with python-hcl2 (no provider needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_component

from .conftest import EXAMPLES, MODULES, TERRAFORM

_META = ("__is_block__", "__comments__", "__inline_comments__")


def _clean(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of labels and strings; take them off."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


class Config:
    """Every block of a directory's .tf files, by kind, type and name."""

    def __init__(self, directory: Path) -> None:
        try:
            import hcl2
        except ImportError:
            missing_component("python-hcl2", 'pip install -r tests/terraform/requirements.txt')
        self.resources: dict[str, dict[str, Any]] = {}
        self.data: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.modules: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        self.terraform: list[Any] = []
        for path in sorted(directory.glob("*.tf")):
            with path.open() as handle:
                parsed = _clean(hcl2.load(handle))
            for kind, into in (("resource", self.resources), ("data", self.data)):
                for block in parsed.get(kind, []):
                    for type_, named in block.items():
                        into.setdefault(type_, {}).update(named)
            for kind, into in (("variable", self.variables), ("output", self.outputs),
                               ("module", self.modules)):
                for block in parsed.get(kind, []):
                    into.update(block)
            for block in parsed.get("locals", []):
                self.locals.update(block)
            self.terraform += parsed.get("terraform", [])

    def resource(self, type_: str, name: str) -> Any:
        assert name in self.resources.get(type_, {}), f"missing resource {type_}.{name}"
        return self.resources[type_][name]


def config(directory: str) -> Config:
    return Config(TERRAFORM / directory)


# -- every module -------------------------------------------------------------------------

@pytest.mark.parametrize("module", MODULES)
def test_every_variable_and_output_is_described_and_documented_in_the_readme(module: str) -> None:
    cfg = config(module)
    readme = (TERRAFORM / module / "README.md").read_text()
    for name, body in cfg.variables.items():
        assert body.get("description"), f"{module}: variable {name} has no description"
        assert "type" in body, f"{module}: variable {name} has no type"
        assert f"`{name}`" in readme, f"{module}/README.md does not document input `{name}`"
    for name, body in cfg.outputs.items():
        assert body.get("description"), f"{module}: output {name} has no description"
        assert f"`{name}`" in readme, f"{module}/README.md does not document output `{name}`"


@pytest.mark.parametrize("module", MODULES)
def test_every_module_pins_terraform_and_its_provider(module: str) -> None:
    [block] = config(module).terraform
    assert block["required_version"] == ">= 1.9"
    [providers] = block["required_providers"]
    assert len(providers) == 1
    [(name, spec)] = providers.items()
    assert spec["source"] == f"hashicorp/{name}"


def test_the_aws_provider_constraint_accepts_the_mirrored_5_100() -> None:
    [providers] = config("aws-sqs-lambda").terraform[0]["required_providers"]
    constraint = providers["aws"]["version"]
    mirrored = (5, 100, 0)
    for part in constraint.split(","):
        found = re.fullmatch(r"\s*(>=|<)\s*([\d.]+)\s*", part)
        assert found, f"unexpected constraint {constraint!r}"
        bound = tuple(int(x) for x in found[2].split("."))
        accepted = mirrored >= bound if found[1] == ">=" else mirrored < bound
        assert accepted, f"{constraint!r} refuses the mirrored AWS provider 5.100.0"


@pytest.mark.parametrize("module", MODULES)
def test_modules_grant_nothing_project_wide(module: str) -> None:
    cfg = config(module)
    types = set(cfg.resources)
    project = {(t, name): body for t in types if t.startswith("google_project_iam")
               for name, body in cfg.resources[t].items()}
    # Firestore has no IAM below the project: the store's one grant is conditioned to its
    # database, and is the only project-level binding
    assert set(project) <= {("google_project_iam_member", "function_uses_store")}, project
    for body in project.values():
        [condition] = body["condition"]
        assert condition["expression"].startswith('resource.name.startsWith("projects/${var.project}/databases/')
        assert body["role"] == "roles/datastore.user"
    assert "aws_iam_policy_attachment" not in types  # exclusive attachments hijack other roles


@pytest.mark.parametrize("module", MODULES)
def test_every_module_outputs_the_backend_url_and_the_attempts(module: str) -> None:
    outputs = config(module).outputs
    attempts = {"aws-sqs-lambda": "max_receive_count", "gcp-cloud-tasks": "max_attempts",
                "gcp-pubsub": "max_delivery_attempts"}[module]
    assert {"cloudqueue_url", attempts} <= set(outputs)


# -- aws-sqs-lambda ---------------------------------------------------------------------------

def test_sqs_queue_redrives_to_its_dlq_after_max_receive_count() -> None:
    queue = config("aws-sqs-lambda").resource("aws_sqs_queue", "this")
    policy = queue["redrive_policy"]
    assert "deadLetterTargetArn = aws_sqs_queue.dlq.arn" in policy
    assert "maxReceiveCount     = var.max_receive_count" in policy or \
        "maxReceiveCount = var.max_receive_count" in policy


def test_dlq_admits_only_its_source_queue() -> None:
    allow = config("aws-sqs-lambda").resource("aws_sqs_queue_redrive_allow_policy", "dlq")
    assert '"byQueue"' in allow["redrive_allow_policy"]
    assert "aws_sqs_queue.this.arn" in allow["redrive_allow_policy"]


def test_both_queues_are_encrypted_with_sqs_keys_or_the_given_kms_key() -> None:
    cfg = config("aws-sqs-lambda")
    assert cfg.locals["sqs_managed_sse"] == "${var.kms_key_arn == null ? true : null}"
    assert cfg.locals["dlq_sqs_managed_sse"] == "${local.dlq_kms_key_arn == null ? true : null}"
    queue = cfg.resource("aws_sqs_queue", "this")
    assert queue["sqs_managed_sse_enabled"] == "${local.sqs_managed_sse}"
    assert queue["kms_master_key_id"] == "${var.kms_key_arn}"
    dlq = cfg.resource("aws_sqs_queue", "dlq")
    assert dlq["sqs_managed_sse_enabled"] == "${local.dlq_sqs_managed_sse}"
    assert dlq["kms_master_key_id"] == "${local.dlq_kms_key_arn}"


def test_both_queue_policies_deny_requests_without_tls() -> None:
    cfg = config("aws-sqs-lambda")
    doc = cfg.data["aws_iam_policy_document"]["queue_policy"]
    assert set(doc["for_each"]) == {"queue", "dlq"}
    [statement] = doc["statement"]
    assert statement["effect"] == "Deny" and statement["actions"] == ["sqs:*"]
    [condition] = statement["condition"]
    assert (condition["test"], condition["variable"], condition["values"]) == \
        ("Bool", "aws:SecureTransport", ["false"])
    for name in ("queue", "dlq"):
        policy = cfg.resource("aws_sqs_queue_policy", name)
        assert f'queue_policy["{name}"]' in policy["policy"]


def cfg_locals() -> dict[str, Any]:
    return config("aws-sqs-lambda").locals


def test_function_role_is_least_privilege_on_these_queues() -> None:
    doc = config("aws-sqs-lambda").data["aws_iam_policy_document"]["consumer"]
    statements = {s["sid"]: s for s in doc["statement"]}
    assert set(statements["ConsumeQueue"]["actions"]) == {
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    # this queue, and the queues of var.queues (none unless given)
    assert statements["ConsumeQueue"]["resources"] == (
        "${concat([aws_sqs_queue.this.arn], [for key in sort(keys(aws_sqs_queue.queues)) : "
        "aws_sqs_queue.queues[key].arn])}")
    assert set(statements["SendDeadLetters"]["actions"]) == {"sqs:SendMessage", "sqs:GetQueueUrl"}
    assert statements["SendDeadLetters"]["resources"] == (
        "${concat([aws_sqs_queue.dlq.arn], [for key in sort(keys(aws_sqs_queue.queues_dlq)) : "
        "aws_sqs_queue.queues_dlq[key].arn])}")
    dynamic = {d["statement"]["content"][0]["sid"]: d["statement"] for d in doc["dynamic"]}
    assert set(dynamic) == {"SendToQueue", "QueueKey", "ReadPayloads", "PayloadKey", "ScheduleLongDelays",
                            "PassSchedulerRole"}
    # long delays (long_delay_scheduler): create schedules in the group, pass the scheduler role only
    assert dynamic["ScheduleLongDelays"]["content"][0]["actions"] == ["scheduler:CreateSchedule"]
    assert dynamic["ScheduleLongDelays"]["content"][0]["resources"][0].endswith(
        ":schedule/${var.schedule_group_name}/*")
    assert dynamic["PassSchedulerRole"]["content"][0]["resources"] == ["${aws_iam_role.scheduler[0].arn}"]
    # the claim check: get and delete, on the payload prefix only
    assert set(dynamic["ReadPayloads"]["content"][0]["actions"]) == {"s3:GetObject", "s3:DeleteObject"}
    assert dynamic["ReadPayloads"]["content"][0]["resources"] == [
        "${local.payload_bucket_arn}/${local.payload_prefix}/*"]
    assert dynamic["PayloadKey"]["content"][0]["actions"] == ["kms:Decrypt"]
    assert dynamic["QueueKey"]["for_each"] == "${length(local.kms_key_arns) == 0 ? [] : [local.kms_key_arns]}"
    assert cfg_locals()["kms_key_arns"] == "${distinct(compact([var.kms_key_arn, local.dlq_kms_key_arn]))}"
    assert set(dynamic["QueueKey"]["content"][0]["actions"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    every_action = [a for s in doc["statement"] for a in s["actions"]]
    assert not [a for a in every_action if a.endswith("*")], every_action


def test_cron_schedules_send_to_the_queue_with_a_role_of_their_own() -> None:
    cfg = config("aws-sqs-lambda")
    schedule = cfg.resource("aws_scheduler_schedule", "this")
    assert schedule["for_each"] == "${var.schedules}"
    [target] = schedule["target"]
    assert target["arn"] == "${each.value.queue == null ? aws_sqs_queue.this.arn : aws_sqs_queue.queues[each.value.queue].arn}"
    assert target["role_arn"] == "${aws_iam_role.scheduler[0].arn}"
    assert target["input"] == "${each.value.body}"
    assert schedule["flexible_time_window"] == [{"mode": "OFF"}]
    doc = cfg.data["aws_iam_policy_document"]["scheduler"]
    [send] = doc["statement"]
    assert send["actions"] == ["sqs:SendMessage"]
    assert send["resources"].startswith("${concat([aws_sqs_queue.this.arn, aws_sqs_queue.dlq.arn], ")
    [assume] = cfg.data["aws_iam_policy_document"]["assume_scheduler"]["statement"]
    assert assume["principals"][0]["identifiers"] == ["scheduler.amazonaws.com"]
    assert assume["condition"][0]["variable"] == "aws:SourceAccount"


@pytest.mark.parametrize("module", ["gcp-cloud-tasks", "gcp-pubsub"])
def test_gcp_cron_schedules_are_cloud_scheduler_jobs_on_the_queue(module: str) -> None:
    job = config(module).resource("google_cloud_scheduler_job", "this")
    assert job["for_each"] == "${var.schedules}"
    assert job["schedule"] == "${each.value.expression}" and job["time_zone"] == "${each.value.timezone}"
    assert job["retry_config"] == [{"retry_count": "${var.schedule_retry_count}"}]
    if module == "gcp-pubsub":
        # "topic" (the default): published to the job's topic
        dynamic = {name: block for entry in job["dynamic"] for name, block in entry.items()}
        topic = dynamic["pubsub_target"]
        assert topic["for_each"] == "${local.schedules_to_function ? [] : [1]}"
        target = topic["content"][0]
        assert target["topic_name"].startswith("${each.value.queue == null ? google_pubsub_topic.this.id")
        # "function": posted to the push endpoint, where the shim reads X-CloudScheduler-ScheduleTime
        http = dynamic["http_target"]
        assert http["for_each"] == "${local.schedules_to_function ? [1] : []}"
        direct = http["content"][0]
        assert (direct["uri"], direct["body"]) == ("${var.push_endpoint}", "${base64encode(each.value.body)}")
        assert direct["oidc_token"] == [{"service_account_email": "${google_service_account.push.email}",
                                         "audience": "${local.audience}"}]
    else:
        [target] = job["http_target"]
        # "queue" (the default): tasks.create on the job's queue, as the scheduler's own account;
        # "function": the body itself to target_url, with the invoker's token
        assert target["uri"] == ("${local.schedules_to_function ? var.target_url : \"${local.tasks_api}/"
                                 "${each.value.queue == null ? google_cloud_tasks_queue.this.id : "
                                 "google_cloud_tasks_queue.queues[each.value.queue].id}/tasks\"}")
        dynamic = {name: block for entry in target["dynamic"] for name, block in entry.items()}
        oauth = dynamic["oauth_token"]
        assert oauth["for_each"] == "${local.schedules_to_function ? [] : [1]}"
        assert oauth["content"][0]["service_account_email"] == "${google_service_account.scheduler[0].email}"
        oidc = dynamic["oidc_token"]
        assert oidc["for_each"] == "${local.schedules_to_function ? [1] : []}"
        assert oidc["content"][0] == {"service_account_email": "${google_service_account.invoker.email}",
                                      "audience": "${local.audience}"}
        cfg = config(module)
        # the scheduler's account and its grants exist only to create tasks
        assert cfg.resource("google_service_account", "scheduler")["count"] == "${local.scheduler_account ? 1 : 0}"
        assert "!local.schedules_to_function" in cfg.locals["scheduled_queues"]
def test_payload_bucket_is_private_tls_only_and_expires_objects_on_the_prefix() -> None:
    cfg = config("aws-sqs-lambda")
    block = cfg.resource("aws_s3_bucket_public_access_block", "payloads")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    rule, aborts = cfg.resource("aws_s3_bucket_lifecycle_configuration", "payloads")["rule"]
    assert rule["status"] == aborts["status"] == "Enabled"
    assert aborts["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == 1
    assert rule["filter"][0]["prefix"] == "${local.payload_prefix}/"
    assert rule["expiration"][0]["days"] == "${local.payload_expiration_days}"
    # the rule outlives both retentions and the longest delay, or the plan fails
    assert "local.payload_queue_retention + var.dlq_message_retention_seconds" in cfg.locals["payload_min_days"]
    assert "q.message_retention_seconds" in cfg.locals["payload_queue_retention"]  # every queue of the app
    producer = cfg.data["aws_iam_policy_document"]["payload_producer"]
    [offload] = producer["statement"]
    assert offload["actions"] == ["s3:PutObject"]
    assert offload["resources"] == ["${local.payload_bucket_arn}/${local.payload_prefix}/*"]
    [tls] = cfg.data["aws_iam_policy_document"]["payloads_bucket"]["statement"]
    assert (tls["effect"], tls["condition"][0]["variable"]) == ("Deny", "aws:SecureTransport")


@pytest.mark.parametrize(("module", "publishers"), [("gcp-pubsub", "publishers"), ("gcp-cloud-tasks", "enqueuers")])
def test_gcp_payload_bucket_expires_objects_and_grants_on_the_prefix_only(module: str, publishers: str) -> None:
    cfg = config(module)
    bucket = cfg.resource("google_storage_bucket", "payloads")
    assert bucket["uniform_bucket_level_access"] is True and bucket["public_access_prevention"] == "enforced"
    [rule] = bucket["lifecycle_rule"]
    assert rule["action"][0]["type"] == "Delete"
    assert rule["condition"][0]["age"] == "${local.payload_expiration_days}"
    assert rule["condition"][0]["matches_prefix"] == ["${local.payload_prefix}/"]
    assert "retention_seconds" in cfg.locals["payload_min_days"]
    grants = {name: cfg.resource("google_storage_bucket_iam_member", name)
              for name in ("function_uses_payloads", f"{publishers}_offload_payloads")}
    assert grants["function_uses_payloads"]["role"] == "roles/storage.objectUser"
    assert grants[f"{publishers}_offload_payloads"]["role"] == "roles/storage.objectCreator"
    for grant in grants.values():
        assert grant["condition"][0]["expression"] == "${local.payload_condition}"
    assert "objects/${local.payload_prefix}/" in cfg.locals["payload_condition"]


def test_event_source_mapping_reports_partial_batch_failures() -> None:
    mapping = config("aws-sqs-lambda").resource("aws_lambda_event_source_mapping", "this")
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["batch_size"] == "${var.batch_size}"
    assert mapping["maximum_batching_window_in_seconds"] == "${var.maximum_batching_window_in_seconds}"
    dynamic = {name: block for d in mapping["dynamic"] for name, block in d.items()}
    assert dynamic["scaling_config"]["content"][0]["maximum_concurrency"] == "${scaling_config.value}"
    assert set(dynamic) == {"scaling_config", "filter_criteria", "metrics_config"}
    assert mapping["enabled"] == "${var.mapping_enabled}"


def test_visibility_timeout_must_be_six_function_timeouts() -> None:
    variable = config("aws-sqs-lambda").variables["visibility_timeout_seconds"]
    conditions = [v["condition"] for v in variable["validation"]]
    assert ("${var.visibility_timeout_seconds >= 6 * var.function_timeout_seconds"
            " + var.maximum_batching_window_in_seconds}") in conditions


def test_aws_outputs_include_urls_arns_and_the_function_environment() -> None:
    outputs = config("aws-sqs-lambda").outputs
    assert {"queue_url", "queue_arn", "dlq_url", "dlq_arn", "role_arn", "lambda_environment"} <= set(outputs)
    assert outputs["cloudqueue_url"]["value"] == \
        "sqs://${aws_sqs_queue.this.name}?region=${data.aws_region.current.name}"
    assert "CLOUDQUEUE_URL" in outputs["lambda_environment"]["value"]


# -- gcp-cloud-tasks ----------------------------------------------------------------------------

def test_cloud_tasks_queue_carries_rate_limits_retry_config_and_logging() -> None:
    queue = config("gcp-cloud-tasks").resource("google_cloud_tasks_queue", "this")
    [retry] = queue["retry_config"]
    assert retry["max_attempts"] == "${var.max_attempts}"
    assert retry["min_backoff"] == "${var.min_backoff_seconds}s"
    assert retry["max_backoff"] == "${var.max_backoff_seconds}s"
    assert retry["max_doublings"] == "${var.max_doublings}"
    [limits] = queue["rate_limits"]
    assert set(limits) == {"max_dispatches_per_second", "max_concurrent_dispatches"}
    [logging] = queue["stackdriver_logging_config"]
    assert logging["sampling_ratio"] == "${var.logging_sampling_ratio}"


def test_cloud_tasks_invoker_may_invoke_the_target_service_only() -> None:
    cfg = config("gcp-cloud-tasks")
    grant = cfg.resource("google_cloud_run_v2_service_iam_member", "invoker")
    assert grant["role"] == "roles/run.invoker"
    assert grant["name"] == "${var.target_service}"
    assert grant["member"] == "serviceAccount:${google_service_account.invoker.email}"
    invoker_grants = [(t, n) for t, named in cfg.resources.items() for n, body in named.items()
                      if "google_service_account.invoker.email" in str(body.get("member", ""))]
    assert invoker_grants == [("google_cloud_run_v2_service_iam_member", "invoker")]


def test_cloud_tasks_enqueuers_may_enqueue_and_act_as_the_invoker() -> None:
    cfg = config("gcp-cloud-tasks")
    enqueue = cfg.resource("google_cloud_tasks_queue_iam_member", "enqueuer")
    assert enqueue["role"] == "roles/cloudtasks.enqueuer"
    act_as = cfg.resource("google_service_account_iam_member", "enqueuer_acts_as_invoker")
    assert act_as["role"] == "roles/iam.serviceAccountUser"
    assert act_as["service_account_id"] == "${google_service_account.invoker.name}"


def test_cloud_tasks_dead_letters_go_to_a_topic_with_a_subscription_that_keeps_them() -> None:
    cfg = config("gcp-cloud-tasks")
    cfg.resource("google_pubsub_topic", "dead_letters")
    sub = cfg.resource("google_pubsub_subscription", "dead_letters")
    assert sub["topic"] == "${google_pubsub_topic.dead_letters.id}"
    assert sub["expiration_policy"] == [{"ttl": ""}]
    url = cfg.locals["cloudqueue_url"]
    for part in ("cloudtasks://${var.project}/${var.location}/${google_cloud_tasks_queue.this.name}",
                 "?target=", "&service_account=", "&audience=", "&dead_letter=", "pubsub://"):
        assert part in url, part


# -- gcp-pubsub ---------------------------------------------------------------------------------

def test_pubsub_pushes_to_https_with_oidc_and_retries_then_dead_letters() -> None:
    cfg = config("gcp-pubsub")
    sub = cfg.resource("google_pubsub_subscription", "push")
    [push] = sub["push_config"]
    assert push["push_endpoint"] == "${var.push_endpoint}"
    [oidc] = push["oidc_token"]
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${local.audience}"
    [retry] = sub["retry_policy"]
    assert retry == {"minimum_backoff": "${var.minimum_backoff_seconds}s",
                     "maximum_backoff": "${var.maximum_backoff_seconds}s"}
    [dead] = sub["dead_letter_policy"]
    assert dead == {"dead_letter_topic": "${google_pubsub_topic.dead_letters.id}",
                    "max_delivery_attempts": "${var.max_delivery_attempts}"}
    assert sub["expiration_policy"] == [{"ttl": ""}]
    validation = cfg.variables["push_endpoint"]["validation"][0]["condition"]
    assert 'startswith(var.push_endpoint, "https://")' in validation


def test_pubsub_dead_letters_are_kept_by_a_subscription() -> None:
    sub = config("gcp-pubsub").resource("google_pubsub_subscription", "dead_letters")
    assert sub["topic"] == "${google_pubsub_topic.dead_letters.id}"
    assert "push_config" not in sub
    assert sub["expiration_policy"] == [{"ttl": ""}]


def test_pubsub_service_agent_may_forward_dead_letters_and_ack_the_originals() -> None:
    cfg = config("gcp-pubsub")
    assert cfg.locals["pubsub_agent"] == \
        "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    publish = cfg.resource("google_pubsub_topic_iam_member", "pubsub_agent_publishes_dead_letters")
    assert (publish["topic"], publish["role"], publish["member"]) == \
        ("${google_pubsub_topic.dead_letters.name}", "roles/pubsub.publisher", "${local.pubsub_agent}")
    ack = cfg.resource("google_pubsub_subscription_iam_member", "pubsub_agent_acks_originals")
    assert (ack["subscription"], ack["role"], ack["member"]) == \
        ("${google_pubsub_subscription.push.name}", "roles/pubsub.subscriber", "${local.pubsub_agent}")


def test_pubsub_customer_managed_key_is_optional_and_granted_to_the_agent() -> None:
    cfg = config("gcp-pubsub")
    assert cfg.variables["kms_key_name"]["default"] is None
    for name in ("this", "dead_letters"):
        assert cfg.resource("google_pubsub_topic", name)["kms_key_name"] == "${var.kms_key_name}"
    grant = cfg.resource("google_kms_crypto_key_iam_member", "pubsub_agent")
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert grant["member"] == "${local.pubsub_agent}"


def test_pubsub_max_delivery_attempts_is_bounded_as_pubsub_bounds_it() -> None:
    [check] = config("gcp-pubsub").variables["max_delivery_attempts"]["validation"]
    assert "var.max_delivery_attempts >= 5" in check["condition"]
    assert "var.max_delivery_attempts <= 100" in check["condition"]


# -- examples -----------------------------------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_pass_the_generated_tfvars_to_their_module(example: str) -> None:
    cfg = config(f"examples/{example}")
    [(_, module)] = cfg.modules.items()
    assert module["source"].startswith("../../")
    tfvars = (TERRAFORM / "examples" / example / "orders.auto.tfvars").read_text()
    names = re.findall(r"^(\w+)\s*=", tfvars, re.M)
    assert names
    for name in names:
        assert name in cfg.variables, f"examples/{example} does not declare {name}"
        assert module.get(name) == f"${{var.{name}}}", f"examples/{example} does not pass {name}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_give_the_function_the_backend_url(example: str) -> None:
    cfg = config(f"examples/{example}")
    [(name, _)] = cfg.modules.items()
    functions = {**cfg.resources.get("aws_lambda_function", {}),
                 **cfg.resources.get("google_cloudfunctions2_function", {})}
    [(_, function)] = functions.items()
    assert f"module.{name}." in json.dumps(function)
    assert ("lambda_environment" if example == "aws" else "function_environment") in json.dumps(function)


# -- first apply: resources referenced, not named --------------------------------------------

def test_aws_example_hands_the_function_resource_to_the_mapping() -> None:
    [module] = config("examples/aws").modules.values()
    assert module["function_name"] == "${aws_lambda_function.worker.function_name}"


@pytest.mark.parametrize("example", ["gcp-cloud-tasks", "gcp-pubsub"])
def test_gcp_examples_grant_run_invoker_on_the_function_resource_not_on_a_name(example: str) -> None:
    [module] = config(f"examples/{example}").modules.values()
    assert module["target_service"] == "${google_cloudfunctions2_function.worker.name}"


# -- grants follow the resources they are on ---------------------------------------------------

def _module_references(body: Any, cfg: Config) -> set[str]:
    """The module's own resources (``type.name``) a block's arguments refer to."""
    text = json.dumps({k: v for k, v in body.items() if k not in ("lifecycle", "count", "for_each")})
    found = set(re.findall(r"\b(google_\w+)\.(\w+)(\[[^\]]+\])?\.", text))
    return {f"{t}.{n}{i}" for t, n, i in found if n in cfg.resources.get(t, {})}


@pytest.mark.parametrize("module", ["gcp-cloud-tasks", "gcp-pubsub"])
def test_every_grant_on_a_module_resource_is_made_again_when_that_resource_is_replaced(module: str) -> None:
    # A replaced topic, subscription, queue or account comes back under the same name with
    # no grants (an account also with a new unique id): without replace_triggered_by
    # Terraform sees no change in the grant and the permission is gone unnoticed.
    cfg = config(module)
    grants = {f"{t}.{n}": body for t, named in cfg.resources.items() if t.endswith("_iam_member")
              for n, body in named.items()}
    assert grants
    for name, body in grants.items():
        targets = _module_references(body, cfg)
        if not targets:
            continue  # on something outside the module (a KMS key)
        [lifecycle] = body.get("lifecycle", [{}])
        triggers = set(lifecycle.get("replace_triggered_by", []))
        assert triggers == {f"${{{t}.id}}" for t in targets}, f"{module}: {name} ({targets})"


@pytest.mark.parametrize("example", ["gcp-cloud-tasks", "gcp-pubsub"])
def test_the_source_bucket_keeps_access_logs_in_a_bucket_cloud_storage_may_write(example: str) -> None:
    # GCS data-access audit logs are off by default: "audited by Cloud Audit Logs" is not
    # true unless the project turns them on, so the bucket logs its own access.
    cfg = config(f"examples/{example}")
    source = cfg.resource("google_storage_bucket", "source")
    assert source["logging"] == [{"log_bucket": "${google_storage_bucket.source_logs.name}"}]
    writer = cfg.resource("google_storage_bucket_iam_member", "source_logs_writer")
    assert (writer["role"], writer["member"]) == ("roles/storage.objectCreator",
                                                 "group:cloud-storage-analytics@google.com")
    text = (TERRAFORM / "examples" / example / "main.tf").read_text()
    assert "Cloud Audit Logs" not in text


# -- several queues -------------------------------------------------------------------------------

@pytest.mark.parametrize(("module", "made"), [
    ("aws-sqs-lambda", ["aws_sqs_queue.queues", "aws_sqs_queue.queues_dlq",
                        "aws_lambda_event_source_mapping.queues", "aws_sqs_queue_policy.queues",
                        "aws_sqs_queue_policy.queues_dlq", "aws_sqs_queue_redrive_allow_policy.queues_dlq"]),
    ("gcp-cloud-tasks", ["google_cloud_tasks_queue.queues", "google_pubsub_topic.queues_dead_letters",
                         "google_pubsub_subscription.queues_dead_letters",
                         "google_cloud_tasks_queue_iam_member.queues_enqueuer"]),
    ("gcp-pubsub", ["google_pubsub_topic.queues", "google_pubsub_subscription.queues",
                    "google_pubsub_topic.queues_dead_letters", "google_pubsub_subscription.queues_dead_letters",
                    "google_pubsub_topic_iam_member.pubsub_agent_publishes_queues_dead_letters",
                    "google_pubsub_subscription_iam_member.pubsub_agent_acks_queues_originals"]),
])
def test_every_module_makes_a_queue_its_dead_letters_and_its_consumer_per_app_queue(
        module: str, made: list[str]) -> None:
    cfg = config(module)
    variable = cfg.variables["queues"]
    assert variable["default"] == {} and variable["nullable"] is False
    for address in made:
        kind, name = address.split(".")
        body = cfg.resources[kind][name]
        assert "for_each" in body, f"{module}: {address} is not made per queue"
    assert {"cloudqueue_urls"} <= set(cfg.outputs)


def test_each_extra_sqs_queue_redrives_to_its_own_dlq_after_its_receive_count() -> None:
    queue = config("aws-sqs-lambda").resource("aws_sqs_queue", "queues")
    assert queue["redrive_policy"] == ("${jsonencode({deadLetterTargetArn = "
                                       "aws_sqs_queue.queues_dlq[each.key].arn, maxReceiveCount = "
                                       "each.value.max_receive_count})}")
