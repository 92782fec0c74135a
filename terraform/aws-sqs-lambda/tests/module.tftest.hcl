# Offline checks of the module's logic with a mocked AWS provider:
#   terraform init && terraform test

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = {
      name = "eu-west-1"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }

  # The mock cannot render policy documents; any valid JSON will do.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_resource "aws_sqs_queue" {
    defaults = {
      arn = "arn:aws:sqs:eu-west-1:123456789012:mocked"
      url = "https://sqs.eu-west-1.amazonaws.com/123456789012/mocked"
    }
  }
}

variables {
  name              = "orders"
  function_name     = "orders-worker"
  max_receive_count = 5
}

run "standard_queue_has_dlq_after_max_receive_count" {
  command = apply

  assert {
    condition     = aws_sqs_queue.this.name == "orders" && aws_sqs_queue.dlq.name == "orders-dlq"
    error_message = "queue and DLQ names"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy).maxReceiveCount == 5
    error_message = "maxReceiveCount must be the given max_receive_count"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy).deadLetterTargetArn == aws_sqs_queue.dlq.arn
    error_message = "the redrive policy must point at the DLQ"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue_redrive_allow_policy.dlq[0].redrive_allow_policy).redrivePermission == "byQueue"
    error_message = "the DLQ must allow only its source queue"
  }

  assert {
    condition     = aws_sqs_queue.this.fifo_queue == false && aws_sqs_queue.dlq.fifo_queue == false
    error_message = "standard queues by default"
  }

  assert {
    condition     = output.cloudqueue_url == "sqs://orders?region=eu-west-1"
    error_message = "cloudqueue_url must be sqs://<queue-name>?region=<region>"
  }

  assert {
    condition     = output.lambda_environment.CLOUDQUEUE_URL == output.cloudqueue_url
    error_message = "the function environment carries CLOUDQUEUE_URL"
  }
}

run "encryption_is_sqs_managed_by_default" {
  command = plan

  assert {
    condition     = aws_sqs_queue.this.sqs_managed_sse_enabled == true && aws_sqs_queue.dlq.sqs_managed_sse_enabled == true
    error_message = "SSE-SQS must be on without a KMS key"
  }

  assert {
    condition     = aws_sqs_queue.this.kms_master_key_id == null
    error_message = "no KMS key by default"
  }
}

run "kms_key_encrypts_both_queues" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition     = aws_sqs_queue.this.kms_master_key_id == var.kms_key_arn && aws_sqs_queue.dlq.kms_master_key_id == var.kms_key_arn
    error_message = "both queues use the key"
  }
}

run "fifo_queue_and_fifo_dlq" {
  command = apply

  variables {
    fifo = true
  }

  assert {
    condition     = aws_sqs_queue.this.name == "orders.fifo" && aws_sqs_queue.dlq.name == "orders-dlq.fifo"
    error_message = "FIFO names end in .fifo"
  }

  assert {
    condition     = aws_sqs_queue.this.fifo_queue && aws_sqs_queue.dlq.fifo_queue
    error_message = "a FIFO queue needs a FIFO DLQ"
  }

  assert {
    condition     = output.cloudqueue_url == "sqs://orders.fifo?region=eu-west-1"
    error_message = "cloudqueue_url names the FIFO queue"
  }
}

run "event_source_mapping_reports_batch_item_failures" {
  command = apply

  variables {
    batch_size                         = 100
    maximum_batching_window_in_seconds = 5
    maximum_concurrency                = 20
    visibility_timeout_seconds         = 185
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].function_response_types == toset(["ReportBatchItemFailures"])
    error_message = "partial batch responses must be on"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].batch_size == 100 && aws_lambda_event_source_mapping.this[0].maximum_batching_window_in_seconds == 5
    error_message = "batch size and window"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].scaling_config[0].maximum_concurrency == 20
    error_message = "maximum concurrency"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].function_name == "orders-worker"
    error_message = "the mapping targets the function"
  }
}

run "mapping_can_be_left_out" {
  command = plan

  variables {
    create_event_source_mapping = false
  }

  assert {
    condition     = length(aws_lambda_event_source_mapping.this) == 0
    error_message = "no mapping when create_event_source_mapping = false"
  }
}

run "visibility_timeout_below_six_function_timeouts_is_rejected" {
  command = plan

  variables {
    function_timeout_seconds   = 60
    visibility_timeout_seconds = 300
  }

  expect_failures = [var.visibility_timeout_seconds]
}

run "fifo_batch_over_ten_is_rejected" {
  command = plan

  variables {
    fifo                               = true
    batch_size                         = 20
    maximum_batching_window_in_seconds = 1
  }

  expect_failures = [var.batch_size]
}

run "existing_role_needs_a_name" {
  command = plan

  variables {
    create_role = false
  }

  expect_failures = [aws_iam_role_policy.consumer]
}

run "standard_queue_lets_the_function_send_to_it_for_long_delays" {
  command = plan

  assert {
    condition     = output.allow_send_to_queue == true
    error_message = "a standard queue's jobs can be delayed over 15 minutes: the function must be able to send to its queue"
  }

  assert {
    condition     = contains([for s in data.aws_iam_policy_document.consumer.statement : s.sid], "SendToQueue")
    error_message = "the role must carry the SendToQueue statement"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.consumer.statement : s.resources if s.sid == "SendToQueue"]) == toset([aws_sqs_queue.this.arn])
    error_message = "SendToQueue names this queue only"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.consumer.statement : s.resources if s.sid == "SendDeadLetters"]) == toset([aws_sqs_queue.dlq.arn])
    error_message = "the shim's dead-letter sends need sqs:SendMessage on the DLQ"
  }
}

run "fifo_queue_does_not_send_to_itself_unless_asked" {
  command = plan

  variables {
    fifo = true
  }

  assert {
    condition     = output.allow_send_to_queue == false && !contains([for s in data.aws_iam_policy_document.consumer.statement : s.sid], "SendToQueue")
    error_message = "FIFO queues take no per-message delay: nothing hops"
  }
}

run "fifo_queue_sends_to_itself_when_asked" {
  command = plan

  variables {
    fifo                = true
    allow_send_to_queue = true
  }

  assert {
    condition     = contains([for s in data.aws_iam_policy_document.consumer.statement : s.sid], "SendToQueue")
    error_message = "allow_send_to_queue = true adds SendToQueue"
  }
}

run "default_max_receive_count_keeps_headroom_over_the_default_attempts" {
  command = plan

  variables {
    max_receive_count = null
  }

  # cloudqueue.retry.max_receives_for(3) = 3 + max(3, 5)
  assert {
    condition     = jsondecode(aws_sqs_queue.this.redrive_policy).maxReceiveCount == 8
    error_message = "the default must be the headroom rule for the default 3 attempts"
  }
}

run "dlq_retention_shorter_than_the_queue_is_rejected" {
  command = plan

  variables {
    message_retention_seconds     = 1209600
    dlq_message_retention_seconds = 345600
  }

  expect_failures = [var.dlq_message_retention_seconds]
}

run "extra_queue_policy_statements_are_merged_after_the_tls_rule" {
  command = plan

  variables {
    queue_policy_statements = {
      AllowOrdersTopic = {
        actions    = ["sqs:SendMessage"]
        principals = [{ type = "Service", identifiers = ["sns.amazonaws.com"] }]
        conditions = [{ test = "ArnEquals", variable = "aws:SourceArn", values = ["arn:aws:sns:eu-west-1:123456789012:orders"] }]
      }
    }
    dlq_queue_policy_statements = {
      OpsReadsDeadLetters = {
        actions    = ["sqs:ReceiveMessage", "sqs:GetQueueAttributes"]
        principals = [{ type = "AWS", identifiers = ["arn:aws:iam::210987654321:role/ops"] }]
      }
    }
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.queue_policy["queue"].statement : s.sid] == ["DenyInsecureTransport", "AllowOrdersTopic"]
    error_message = "the queue policy keeps the TLS rule and adds the caller's statement"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.queue_policy["queue"].statement : s.effect if s.sid == "AllowOrdersTopic"]) == "Allow"
    error_message = "statements default to Allow"
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.queue_policy["dlq"].statement : s.sid] == ["DenyInsecureTransport", "OpsReadsDeadLetters"]
    error_message = "the DLQ takes its own statements"
  }
}

run "queue_policy_statements_must_be_sqs_actions" {
  command = plan

  variables {
    queue_policy_statements = {
      Everything = {
        actions    = ["s3:GetObject"]
        principals = [{ type = "AWS", identifiers = ["*"] }]
      }
    }
  }

  expect_failures = [var.queue_policy_statements]
}

run "dead_letter_queue_has_settings_of_its_own" {
  command = plan

  variables {
    fifo                           = true
    dlq_name                       = "orders-dead"
    dlq_visibility_timeout_seconds = 60
    dlq_receive_wait_time_seconds  = 5
    dlq_kms_key_arn                = "arn:aws:kms:eu-west-1:123456789012:key/dlq"
    dlq_tags                       = { retention = "long" }
    tags                           = { app = "orders" }
  }

  assert {
    condition     = aws_sqs_queue.dlq.name == "orders-dead.fifo" && aws_sqs_queue.dlq.visibility_timeout_seconds == 60 && aws_sqs_queue.dlq.receive_wait_time_seconds == 5
    error_message = "DLQ name (FIFO suffix appended), visibility and long polling"
  }

  assert {
    condition     = aws_sqs_queue.dlq.kms_master_key_id == var.dlq_kms_key_arn && aws_sqs_queue.this.sqs_managed_sse_enabled == true
    error_message = "the DLQ's own key; the queue keeps SSE-SQS"
  }

  assert {
    condition     = aws_sqs_queue.dlq.tags == tomap({ app = "orders", retention = "long" })
    error_message = "dlq_tags merge over tags"
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.consumer.statement : s.resources if s.sid == "QueueKey"]) == toset([var.dlq_kms_key_arn])
    error_message = "the role may use the DLQ's key to send dead letters"
  }
}

run "mapping_can_be_paused_filtered_and_measured" {
  command = plan

  variables {
    mapping_enabled = false
    filter_criteria = [jsonencode({ body = { type = ["send_receipt"] } })]
    metrics_config  = ["EventCount"]
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].enabled == false
    error_message = "enabled"
  }

  assert {
    condition     = [for f in aws_lambda_event_source_mapping.this[0].filter_criteria[0].filter : f.pattern] == [jsonencode({ body = { type = ["send_receipt"] } })]
    error_message = "filter criteria"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].metrics_config[0].metrics == toset(["EventCount"])
    error_message = "metrics config"
  }
}

run "a_filter_that_is_not_json_is_rejected" {
  command = plan

  variables {
    filter_criteria = ["type = send_receipt"]
  }

  expect_failures = [var.filter_criteria]
}

run "a_role_name_over_iams_64_characters_fails_at_plan" {
  command = plan

  variables {
    name = "orders-for-the-eu-west-region-of-the-shop-with-a-long-name-x"
  }

  expect_failures = [var.role_name]
}

run "a_function_name_lambda_would_refuse_fails_at_plan" {
  command = plan

  variables {
    function_name = "orders worker"
  }

  expect_failures = [var.function_name]
}

run "a_function_arn_is_accepted" {
  command = plan

  variables {
    function_name = "arn:aws:lambda:eu-west-1:123456789012:function:orders-worker:live"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.this[0].function_name == var.function_name
    error_message = "the mapping takes the ARN"
  }
}

run "visibility_timeout_must_cover_the_batching_window_too" {
  command = plan

  variables {
    function_timeout_seconds           = 30
    visibility_timeout_seconds         = 180
    maximum_batching_window_in_seconds = 5
  }

  expect_failures = [var.visibility_timeout_seconds]
}

run "no_payload_bucket_unless_asked" {
  command = plan

  assert {
    condition     = length(aws_s3_bucket.payloads) == 0 && output.payload_store_url == null
    error_message = "the claim check's bucket is optional"
  }

  assert {
    condition     = !contains(keys(output.lambda_environment), "CLOUDQUEUE_PAYLOAD_STORE")
    error_message = "no payload store in the environment without a bucket"
  }
}

run "payload_bucket_expires_objects_after_both_retentions" {
  command = apply

  variables {
    payload_bucket = {}
  }

  assert {
    condition     = aws_s3_bucket.payloads[0].bucket == "orders-payloads"
    error_message = "bucket named after the queue"
  }

  # 4 days in the queue + 14 in the DLQ (a dead letter is a new message there) + 1
  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.payloads[0].rule[0].expiration[0].days == 19
    error_message = "the rule must outlive the queue's and the DLQ's retention"
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.payloads[0].rule[0].filter[0].prefix == "orders/"
    error_message = "the rule applies to the prefix only"
  }

  assert {
    condition     = output.payload_store_url == "s3://orders-payloads/orders?region=eu-west-1"
    error_message = "payload_store_url for cq.App"
  }

  assert {
    condition     = output.lambda_environment.CLOUDQUEUE_PAYLOAD_STORE == output.payload_store_url
    error_message = "the function's environment names the payload store"
  }

  assert {
    condition     = alltrue([for block in aws_s3_bucket_public_access_block.payloads : block.block_public_acls && block.block_public_policy && block.ignore_public_acls && block.restrict_public_buckets])
    error_message = "the bucket is private"
  }

  assert {
    condition     = alltrue([for rule in aws_s3_bucket_server_side_encryption_configuration.payloads[0].rule : alltrue([for sse in rule.apply_server_side_encryption_by_default : sse.sse_algorithm == "AES256"])])
    error_message = "SSE-S3 by default"
  }
}

run "payload_grants_are_get_and_delete_on_the_prefix_only" {
  command = plan

  variables {
    payload_bucket = { prefix = "jobs/large" }
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.consumer.statement : s.resources if s.sid == "ReadPayloads"][0] == toset(["arn:aws:s3:::orders-payloads/jobs/large/*"])
    error_message = "the function's role reads payloads under the prefix only"
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.consumer.statement : s.actions if s.sid == "ReadPayloads"][0] == toset(["s3:GetObject", "s3:DeleteObject"])
    error_message = "the function's role may get and delete, nothing else"
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.payload_producer[0].statement : s.actions if s.sid == "OffloadPayloads"][0] == toset(["s3:PutObject"])
    error_message = "producers may put, nothing else"
  }
}

run "the_longest_delay_lengthens_the_rule" {
  command = plan

  variables {
    message_retention_seconds     = 86400
    dlq_message_retention_seconds = 172800
    payload_bucket                = { max_delay_days = 30 }
  }

  assert {
    condition     = aws_s3_bucket_lifecycle_configuration.payloads[0].rule[0].expiration[0].days == 34
    error_message = "1 + 2 + 30 days, + 1"
  }
}

run "an_expiration_shorter_than_the_retentions_is_rejected" {
  command = plan

  variables {
    payload_bucket = { expiration_days = 7 }
  }

  expect_failures = [data.aws_iam_policy_document.payload_producer]
}

run "an_existing_bucket_gets_grants_but_is_not_managed" {
  command = plan

  variables {
    payload_bucket = { create = false, name = "shared-payloads" }
  }

  assert {
    condition     = length(aws_s3_bucket.payloads) == 0 && length(aws_s3_bucket_lifecycle_configuration.payloads) == 0
    error_message = "an existing bucket's lifecycle is its owner's"
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.consumer.statement : s.resources if s.sid == "ReadPayloads"][0] == toset(["arn:aws:s3:::shared-payloads/orders/*"])
    error_message = "grants on the existing bucket's prefix"
  }
}

run "queues_each_get_their_own_queue_dlq_and_mapping" {
  command = apply

  variables {
    maximum_concurrency = 10
    queues = {
      critical = { max_receive_count = 3, maximum_concurrency = 50 }
      bulk     = { fifo = true, batch_size = 5 }
    }
  }

  assert {
    condition     = aws_sqs_queue.queues["critical"].name == "orders-critical" && aws_sqs_queue.queues_dlq["critical"].name == "orders-critical-dlq"
    error_message = "a queue is named <name>-<key>, its DLQ <name>-<key>-dlq"
  }

  assert {
    condition     = aws_sqs_queue.queues["bulk"].name == "orders-bulk.fifo" && aws_sqs_queue.queues_dlq["bulk"].fifo_queue
    error_message = "a FIFO queue and its DLQ get .fifo"
  }

  assert {
    condition     = jsondecode(aws_sqs_queue.queues["critical"].redrive_policy).maxReceiveCount == 3 && jsondecode(aws_sqs_queue.queues["bulk"].redrive_policy).maxReceiveCount == 5
    error_message = "each queue redrives after its own max_receive_count, else the module's"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.queues["critical"].scaling_config[0].maximum_concurrency == 50 && aws_lambda_event_source_mapping.queues["bulk"].scaling_config[0].maximum_concurrency == 10
    error_message = "each mapping has its queue's maximum_concurrency, else the module's"
  }

  assert {
    condition     = aws_lambda_event_source_mapping.queues["bulk"].batch_size == 5 && aws_lambda_event_source_mapping.queues["critical"].function_response_types == toset(["ReportBatchItemFailures"])
    error_message = "each mapping reports batch item failures, with its queue's batch size"
  }

  assert {
    condition     = toset(keys(output.queue_urls)) == toset(["default", "critical", "bulk"]) && output.cloudqueue_urls["critical"] == "sqs://orders-critical?region=eu-west-1"
    error_message = "the outputs name every queue, the module's own as default"
  }

  assert {
    condition     = length(aws_sqs_queue_redrive_allow_policy.queues_dlq) == 2 && length(aws_sqs_queue_policy.queues) == 2 && length(aws_sqs_queue_policy.queues_dlq) == 2
    error_message = "every queue and DLQ gets its policy and the DLQ its redrive allow policy"
  }
}

run "a_queue_named_default_fails_at_plan" {
  command = plan

  variables {
    queues = { default = {} }
  }

  expect_failures = [var.queues]
}

run "a_queue_visibility_below_six_function_timeouts_fails_at_plan" {
  command = plan

  variables {
    queues = { critical = { visibility_timeout_seconds = 60 } }
  }

  expect_failures = [var.queues]
}
