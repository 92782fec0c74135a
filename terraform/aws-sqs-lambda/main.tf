# An SQS queue (standard or FIFO) with its dead-letter queue, laid out the way
# cloudqueue's SQS backend and Lambda shim expect it:
#   - SQS moves a message to the DLQ after max_receive_count receives. The library
#     reads the attempt from ApproximateReceiveCount and dead-letters a job after its
#     own cq.Retry(attempts=N), with the reason; max_receive_count keeps headroom
#     above that (attempts + max(attempts, 5)) because receives that never start a job
#     count too, so SQS's own redrive only catches messages nothing ever settles;
#   - the shim sends poison messages and cq.Permanent failures to the DLQ itself,
#     finding it from the source queue's RedrivePolicy;
#   - the event source mapping reports partial batch failures, so only the failed
#     records of a batch come back.

data "aws_region" "current" {}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

locals {
  suffix     = var.fifo ? ".fifo" : ""
  queue_name = "${var.name}${local.suffix}"
  dlq_name   = "${coalesce(var.dlq_name, "${var.name}-dlq")}${local.suffix}"
  role_name  = coalesce(var.role_name, "${var.name}-consumer")
  # SSE-SQS unless a customer-managed key is given: messages are never stored in clear.
  sqs_managed_sse     = var.kms_key_arn == null ? true : null
  kms_reuse           = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds
  dlq_kms_key_arn     = var.dlq_kms_key_arn != null ? var.dlq_kms_key_arn : var.kms_key_arn
  dlq_sqs_managed_sse = local.dlq_kms_key_arn == null ? true : null
  dlq_kms_reuse       = local.dlq_kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds
  # EventBridge Scheduler sends no deduplication id: on a FIFO queue with schedules the
  # body's hash is one, and a retried firing of a slot (the same body) is dropped natively.
  content_based_deduplication = var.fifo ? (var.content_based_deduplication || length(var.schedules) > 0) : null
  # The keys the function's role may use: the queue's to receive, the DLQ's to send.
  kms_key_arns = distinct(compact([var.kms_key_arn, local.dlq_kms_key_arn]))
  # Delays over 15 minutes hop through the queue itself (standard queues only).
  allow_send_to_queue = var.allow_send_to_queue == null ? !var.fifo : var.allow_send_to_queue
  log_group_arn       = "arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/${var.function_name}"
}

resource "aws_sqs_queue" "dlq" {
  name                              = local.dlq_name
  fifo_queue                        = var.fifo
  content_based_deduplication       = var.fifo ? var.content_based_deduplication : null
  message_retention_seconds         = var.dlq_message_retention_seconds
  visibility_timeout_seconds        = var.dlq_visibility_timeout_seconds
  receive_wait_time_seconds         = var.dlq_receive_wait_time_seconds
  sqs_managed_sse_enabled           = local.dlq_sqs_managed_sse
  kms_master_key_id                 = local.dlq_kms_key_arn
  kms_data_key_reuse_period_seconds = local.dlq_kms_reuse
  tags                              = merge(var.tags, var.dlq_tags)
}

resource "aws_sqs_queue" "this" {
  name                              = local.queue_name
  fifo_queue                        = var.fifo
  content_based_deduplication       = local.content_based_deduplication
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  message_retention_seconds         = var.message_retention_seconds
  receive_wait_time_seconds         = var.receive_wait_time_seconds
  sqs_managed_sse_enabled           = local.sqs_managed_sse
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = local.kms_reuse

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = var.tags
}

# Only this queue may use the DLQ as its dead-letter target.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  count = var.redrive_allow_policy ? 1 : 0

  queue_url = aws_sqs_queue.dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.this.arn]
  })
}

# Each queue's policy: deny every request that does not come over TLS, then the
# statements the caller adds (SNS, EventBridge, another account), on that queue only.
data "aws_iam_policy_document" "queue_policy" {
  for_each = {
    queue = { arn = aws_sqs_queue.this.arn, statements = var.queue_policy_statements }
    dlq   = { arn = aws_sqs_queue.dlq.arn, statements = var.dlq_queue_policy_statements }
  }

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

resource "aws_sqs_queue_policy" "queue" {
  queue_url = aws_sqs_queue.this.id
  policy    = data.aws_iam_policy_document.queue_policy["queue"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue_policy["dlq"].json
}
