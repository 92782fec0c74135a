# The consuming function's side: its execution role (least privilege on these
# queues: the module's own and those of var.queues, with their DLQs) and the event
# source mapping.

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

locals {
  # the queues whose delayed jobs hop through themselves
  send_to_queue_arns = concat(
    local.allow_send_to_queue ? [aws_sqs_queue.this.arn] : [],
    [for key in sort(keys(local.queues)) : aws_sqs_queue.queues[key].arn if local.queues[key].allow_send_to_queue],
  )
}

resource "aws_iam_role" "consumer" {
  count = var.create_role ? 1 : 0

  name               = local.role_name
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
  tags               = var.tags
}

data "aws_iam_policy_document" "consumer" {
  statement {
    sid = "ConsumeQueue"
    # GetQueueUrl: CLOUDQUEUE_URL names the queue; GetQueueAttributes: the shim
    # finds the DLQ from the queue's RedrivePolicy.
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = concat([aws_sqs_queue.this.arn], [for key in sort(keys(aws_sqs_queue.queues)) : aws_sqs_queue.queues[key].arn])
  }

  statement {
    sid = "SendDeadLetters"
    # Poison messages and cq.Permanent failures go to the DLQ at once, by the shim.
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
    resources = concat([aws_sqs_queue.dlq.arn], [for key in sort(keys(aws_sqs_queue.queues_dlq)) : aws_sqs_queue.queues_dlq[key].arn])
  }

  dynamic "statement" {
    for_each = length(local.send_to_queue_arns) == 0 ? [] : [local.send_to_queue_arns]

    content {
      sid = "SendToQueue"
      # Delays over 15 minutes hop: the shim sends the message back to its queue.
      actions   = ["sqs:SendMessage"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) == 0 ? [] : [local.kms_key_arns]

    content {
      sid = "QueueKey"
      # Decrypt to receive; GenerateDataKey to send (hops, dead letters) to encrypted queues.
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = local.payloads ? [1] : []

    content {
      sid = "ReadPayloads"
      # The claim check: read a job's payload, delete it once the job succeeded. On the
      # prefix only: no listing, no other keys.
      actions   = ["s3:GetObject", "s3:DeleteObject"]
      resources = ["${local.payload_bucket_arn}/${local.payload_prefix}/*"]
    }
  }

  dynamic "statement" {
    for_each = local.payload_kms_key_arn == null ? [] : [local.payload_kms_key_arn]

    content {
      sid       = "PayloadKey"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.log_group_arn, "${local.log_group_arn}:*"]
  }
}

resource "aws_iam_role_policy" "consumer" {
  name   = "cloudqueue-${var.name}"
  role   = var.create_role ? aws_iam_role.consumer[0].id : local.role_name
  policy = data.aws_iam_policy_document.consumer.json

  lifecycle {
    precondition {
      condition     = var.create_role || var.role_name != null
      error_message = "create_role = false needs role_name: the existing role to give the queue permissions to."
    }
  }
}

resource "aws_lambda_event_source_mapping" "this" {
  count = var.create_event_source_mapping ? 1 : 0

  event_source_arn                   = aws_sqs_queue.this.arn
  function_name                      = var.function_name
  enabled                            = var.mapping_enabled
  batch_size                         = var.batch_size
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
    for_each = var.maximum_concurrency == null ? [] : [var.maximum_concurrency]

    content {
      maximum_concurrency = scaling_config.value
    }
  }

  # Lambda checks the role's SQS permissions when the mapping is created.
  depends_on = [aws_iam_role_policy.consumer]
}
