output "queue_url" {
  description = "URL of the queue."
  value       = aws_sqs_queue.this.url
}

output "queue_arn" {
  description = "ARN of the queue."
  value       = aws_sqs_queue.this.arn
}

output "queue_name" {
  description = "Name of the queue (with \".fifo\" for a FIFO queue)."
  value       = aws_sqs_queue.this.name
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "role_name" {
  description = "Name of the function's execution role."
  value       = var.create_role ? aws_iam_role.consumer[0].name : local.role_name
}

output "role_arn" {
  description = "ARN of the created execution role (null with create_role = false)."
  value       = var.create_role ? aws_iam_role.consumer[0].arn : null
}

output "event_source_mapping_uuid" {
  description = "UUID of the event source mapping (null when not created)."
  value       = var.create_event_source_mapping ? aws_lambda_event_source_mapping.this[0].uuid : null
}

output "cloudqueue_url" {
  description = "The backend URL for cq.App(..., backend=...) / $CLOUDQUEUE_URL."
  value       = "sqs://${aws_sqs_queue.this.name}?region=${data.aws_region.current.name}"
}

output "lambda_environment" {
  description = "Environment variables for the consuming function (merge into its environment block): the backend URL, the payload store's with payload_bucket and the idempotency store's with store_table."
  value = merge({
    CLOUDQUEUE_URL = "sqs://${aws_sqs_queue.this.name}?region=${data.aws_region.current.name}"
    }, local.payloads ? {
    CLOUDQUEUE_PAYLOAD_STORE = "s3://${local.payload_bucket_name}/${local.payload_prefix}?region=${data.aws_region.current.name}"
  } : {}, var.store_table ? { CLOUDQUEUE_STORE_URL = local.store_url } : {})
}

output "max_receive_count" {
  description = "Receives before SQS moves a message to dead letters (the jobs' attempts plus headroom)."
  value       = var.max_receive_count
}

output "visibility_timeout_seconds" {
  description = "The queue's visibility timeout."
  value       = var.visibility_timeout_seconds
}

output "allow_send_to_queue" {
  description = "Whether the function's role may send to its own queue (delays over 15 minutes hop through it)."
  value       = local.allow_send_to_queue
}

output "scheduler_role_arn" {
  description = "The role EventBridge Scheduler sends jobs with (null without schedules or long_delay_scheduler): give it to SQSBackend(long_delay=\"scheduler\", scheduler_role_arn=...) or the URL's scheduler_role_arn option."
  value       = local.scheduler_role ? aws_iam_role.scheduler[0].arn : null
}

output "store_table_name" {
  description = "Name of the idempotency store's table (null without store_table)."
  value       = var.store_table ? aws_dynamodb_table.store[0].name : null
}

output "store_table_arn" {
  description = "ARN of the idempotency store's table (null without store_table)."
  value       = var.store_table ? aws_dynamodb_table.store[0].arn : null
}

output "cloudqueue_store_url" {
  description = "The store URL for cq.App(..., store=...) / $CLOUDQUEUE_STORE_URL (null without store_table)."
  value       = local.store_url
}

output "payload_store_url" {
  description = "The claim check's payload_store URL for cq.App (null without payload_bucket)."
  value       = local.payloads ? "s3://${local.payload_bucket_name}/${local.payload_prefix}?region=${data.aws_region.current.name}" : null
}

output "payload_bucket_arn" {
  description = "ARN of the claim check's bucket (null without payload_bucket)."
  value       = local.payload_bucket_arn
}

output "payload_expiration_days" {
  description = "Age at which the lifecycle rule removes payload objects: it outlives the queue's and the DLQ's retention."
  value       = local.payload_expiration_days
}

output "payload_producer_policy_json" {
  description = "IAM policy JSON a producer's role needs to offload payloads (s3:PutObject on the prefix); null without payload_bucket."
  value       = local.payloads ? data.aws_iam_policy_document.payload_producer[0].json : null
}

output "queue_urls" {
  description = "URL of every queue by app queue name: \"default\" (the module's own) and each of var.queues."
  value       = merge({ default = aws_sqs_queue.this.url }, { for key, q in aws_sqs_queue.queues : key => q.url })
}

output "queue_arns" {
  description = "ARN of every queue by app queue name."
  value       = merge({ default = aws_sqs_queue.this.arn }, { for key, q in aws_sqs_queue.queues : key => q.arn })
}

output "dlq_urls" {
  description = "URL of every queue's dead-letter queue by app queue name."
  value       = merge({ default = aws_sqs_queue.dlq.url }, { for key, q in aws_sqs_queue.queues_dlq : key => q.url })
}

output "cloudqueue_urls" {
  description = "The backend URL of every queue by app queue name, for cq.App(..., queues=...)."
  value = merge(
    { default = "sqs://${aws_sqs_queue.this.name}?region=${data.aws_region.current.name}" },
    { for key, q in aws_sqs_queue.queues : key => "sqs://${q.name}?region=${data.aws_region.current.name}" },
  )
}

output "event_source_mapping_uuids" {
  description = "UUID of every event source mapping by app queue name (empty when not created)."
  value = var.create_event_source_mapping ? merge(
    { default = aws_lambda_event_source_mapping.this[0].uuid },
    { for key, m in aws_lambda_event_source_mapping.queues : key => m.uuid },
  ) : {}
}
