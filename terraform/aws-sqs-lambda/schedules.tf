# Cron schedules declared in code (@app.job(schedule=cq.Cron(...))): one EventBridge
# Scheduler schedule each, sending the job's envelope to the queue. `cloudqueue
# terraform-vars` writes var.schedules; EventBridge Scheduler replaces
# <aws.scheduler.scheduled-time> in each body with the slot, which names the job id and
# the idempotency key, so a retried firing is the same job.
#
# The same role serves long delays: with long_delay_scheduler = true, the library
# (SQSBackend(long_delay="scheduler")) creates a one-time schedule for a delay over its
# threshold instead of hopping through the queue every 15 minutes.

locals {
  scheduler_role = length(var.schedules) > 0 || var.long_delay_scheduler
}

data "aws_iam_policy_document" "assume_scheduler" {
  count = local.scheduler_role ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    # Only this account's schedules may act as the role (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  count = local.scheduler_role ? 1 : 0

  name_prefix        = "${substr(var.name, 0, 26)}-cron-"
  description        = "EventBridge Scheduler sends cron and long-delayed jobs of ${var.name} to its queue."
  assume_role_policy = data.aws_iam_policy_document.assume_scheduler[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  count = local.scheduler_role ? 1 : 0

  # The queues, and their dead-letter queues for firings that cannot be delivered.
  statement {
    actions   = ["sqs:SendMessage"]
    resources = concat([aws_sqs_queue.this.arn, aws_sqs_queue.dlq.arn], [for q in aws_sqs_queue.queues : q.arn], [for q in aws_sqs_queue.queues_dlq : q.arn])
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) == 0 ? [] : [local.kms_key_arns]

    content {
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = statement.value
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  count = local.scheduler_role ? 1 : 0

  name   = "send-scheduled-jobs"
  role   = aws_iam_role.scheduler[0].id
  policy = data.aws_iam_policy_document.scheduler[0].json
}

resource "aws_scheduler_schedule" "this" {
  #checkov:skip=CKV_AWS_297:the schedule's input is the job's envelope, the bytes the queue holds anyway; it uses the queue's customer-managed key when kms_key_arn is set, else an AWS-owned key as SSE-SQS does
  for_each = var.schedules

  name                         = "${var.name}-${each.key}"
  group_name                   = var.schedule_group_name
  description                  = "cloudqueue cron: ${each.key}"
  schedule_expression          = each.value.expression
  schedule_expression_timezone = each.value.timezone
  state                        = var.schedules_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  # Each slot fires at its minute: a window would move the slot the body names.
  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = each.value.queue == null ? aws_sqs_queue.this.arn : aws_sqs_queue.queues[each.value.queue].arn
    role_arn = aws_iam_role.scheduler[0].arn
    input    = each.value.body

    dynamic "sqs_parameters" {
      for_each = each.value.message_group_id == null ? [] : [each.value.message_group_id]

      content {
        message_group_id = sqs_parameters.value
      }
    }

    retry_policy {
      maximum_event_age_in_seconds = var.schedule_maximum_event_age_seconds
      maximum_retry_attempts       = var.schedule_maximum_retry_attempts
    }

    # A firing that cannot be sent is kept with the module's dead letters.
    dead_letter_config {
      arn = each.value.queue == null ? aws_sqs_queue.dlq.arn : aws_sqs_queue.queues_dlq[each.value.queue].arn
    }
  }

  depends_on = [aws_iam_role_policy.scheduler]
}
