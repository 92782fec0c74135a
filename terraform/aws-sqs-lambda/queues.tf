# More queues for an app with several (cq.App(queues={...})): one queue and dead-letter
# queue per entry of var.queues, each with the same redrive rule, encryption and TLS-only
# policy as the module's own queue, and its own event source mapping to the function.
# The function's role (function.tf) consumes every queue and sends to every DLQ. The
# Lambda shim tells the queues apart by the event's source ARN.

locals {
  queues = {
    for key, q in var.queues : key => {
      fifo                       = coalesce(q.fifo, var.fifo)
      name                       = "${var.name}-${key}${coalesce(q.fifo, var.fifo) ? ".fifo" : ""}"
      dlq_name                   = "${var.name}-${key}-dlq${coalesce(q.fifo, var.fifo) ? ".fifo" : ""}"
      max_receive_count          = coalesce(q.max_receive_count, var.max_receive_count)
      allow_send_to_queue        = q.allow_send_to_queue == null ? !coalesce(q.fifo, var.fifo) : q.allow_send_to_queue
      visibility_timeout_seconds = coalesce(q.visibility_timeout_seconds, var.visibility_timeout_seconds)
      message_retention_seconds  = coalesce(q.message_retention_seconds, var.message_retention_seconds)
      batch_size                 = coalesce(q.batch_size, var.batch_size)
      maximum_concurrency        = q.maximum_concurrency == null ? var.maximum_concurrency : q.maximum_concurrency
      mapping_enabled            = q.mapping_enabled == null ? var.mapping_enabled : q.mapping_enabled
    }
  }
  # every queue's policy document, by "queue:<key>" and "dlq:<key>"
  queue_policies = merge(
    { for key, q in aws_sqs_queue.queues : "queue:${key}" => { arn = q.arn, statements = var.queue_policy_statements } },
    { for key, q in aws_sqs_queue.queues_dlq : "dlq:${key}" => { arn = q.arn, statements = var.dlq_queue_policy_statements } },
  )
}

resource "aws_sqs_queue" "queues_dlq" {
  for_each = local.queues

  name                              = each.value.dlq_name
  fifo_queue                        = each.value.fifo
  content_based_deduplication       = each.value.fifo ? var.content_based_deduplication : null
  message_retention_seconds         = var.dlq_message_retention_seconds
  visibility_timeout_seconds        = var.dlq_visibility_timeout_seconds
  receive_wait_time_seconds         = var.dlq_receive_wait_time_seconds
  sqs_managed_sse_enabled           = local.dlq_sqs_managed_sse
  kms_master_key_id                 = local.dlq_kms_key_arn
  kms_data_key_reuse_period_seconds = local.dlq_kms_reuse
  tags                              = merge(var.tags, var.dlq_tags, { "cloudqueue:queue" = each.key })
}

resource "aws_sqs_queue" "queues" {
  for_each = local.queues

  name                              = each.value.name
  fifo_queue                        = each.value.fifo
  content_based_deduplication       = each.value.fifo ? var.content_based_deduplication : null
  visibility_timeout_seconds        = each.value.visibility_timeout_seconds
  message_retention_seconds         = each.value.message_retention_seconds
  receive_wait_time_seconds         = var.receive_wait_time_seconds
  sqs_managed_sse_enabled           = local.sqs_managed_sse
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = local.kms_reuse

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.queues_dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })

  tags = merge(var.tags, { "cloudqueue:queue" = each.key })
}

resource "aws_sqs_queue_redrive_allow_policy" "queues_dlq" {
  for_each = var.redrive_allow_policy ? local.queues : {}

  queue_url = aws_sqs_queue.queues_dlq[each.key].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queues[each.key].arn]
  })
}

data "aws_iam_policy_document" "queues_policy" {
  for_each = local.queue_policies

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  dynamic "statement" {
    for_each = each.value.statements

    content {
      sid       = statement.key
      effect    = statement.value.effect
      actions   = statement.value.actions
      resources = [each.value.arn]

      dynamic "principals" {
        for_each = statement.value.principals

        content {
          type        = principals.value.type
          identifiers = principals.value.identifiers
        }
      }

      dynamic "condition" {
        for_each = statement.value.conditions

        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_sqs_queue_policy" "queues" {
  for_each = local.queues

  queue_url = aws_sqs_queue.queues[each.key].id
  policy    = data.aws_iam_policy_document.queues_policy["queue:${each.key}"].json
}

resource "aws_sqs_queue_policy" "queues_dlq" {
  for_each = local.queues

  queue_url = aws_sqs_queue.queues_dlq[each.key].id
  policy    = data.aws_iam_policy_document.queues_policy["dlq:${each.key}"].json
}

resource "aws_lambda_event_source_mapping" "queues" {
  for_each = var.create_event_source_mapping ? local.queues : {}

  event_source_arn                   = aws_sqs_queue.queues[each.key].arn
  function_name                      = var.function_name
  enabled                            = each.value.mapping_enabled
  batch_size                         = each.value.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  # The shim answers with batchItemFailures: only failed records come back.
  function_response_types = ["ReportBatchItemFailures"]

  dynamic "filter_criteria" {
    for_each = length(var.filter_criteria) == 0 ? [] : [var.filter_criteria]

    content {
      dynamic "filter" {
        for_each = filter_criteria.value

        content {
          pattern = filter.value
        }
      }
    }
  }

  dynamic "metrics_config" {
    for_each = length(var.metrics_config) == 0 ? [] : [var.metrics_config]

    content {
      metrics = metrics_config.value
    }
  }

  dynamic "scaling_config" {
    for_each = each.value.maximum_concurrency == null ? [] : [each.value.maximum_concurrency]

    content {
      maximum_concurrency = scaling_config.value
    }
  }

  # Lambda checks the role's SQS permissions when the mapping is created.
  depends_on = [aws_iam_role_policy.consumer]
}
