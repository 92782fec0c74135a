# The aws-sqs-lambda module applied against moto server on loopback.
# tests/terraform/test_aws_apply.py copies this root next to a copy of terraform/
# and applies it; the library then runs jobs on the queues it created.

terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.83, < 7.0"
    }
  }
}

variable "endpoint" {
  description = "moto server's URL, e.g. http://127.0.0.1:5000."
  type        = string
}

variable "name" {
  description = "Queue name."
  type        = string
}

variable "max_receive_count" {
  description = "Deliveries before dead letters."
  type        = number
}

variable "schedules" {
  description = "Cron schedules, as cloudqueue terraform-vars writes them."
  type = map(object({
    expression       = string
    timezone         = string
    body             = string
    message_group_id = optional(string)
  }))
  default = {}
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true

  endpoints {
    dynamodb  = var.endpoint
    iam       = var.endpoint
    lambda    = var.endpoint
    s3        = var.endpoint
    scheduler = var.endpoint
    sqs       = var.endpoint
    sts       = var.endpoint
  }
}

module "queue" {
  source = "../terraform/aws-sqs-lambda"

  name              = var.name
  function_name     = "${var.name}-worker"
  max_receive_count = var.max_receive_count
  schedules         = var.schedules
  # The visibility timeout the test waits out between deliveries; the module's check
  # (>= 6x the function timeout) holds with the smallest function timeout.
  function_timeout_seconds   = 1
  visibility_timeout_seconds = 6
  # moto runs a mapped function in docker on every send; the library's worker
  # consumes here instead. The mapping is covered by the mocked terraform tests.
  create_event_source_mapping = false
  # moto accepts RedriveAllowPolicy but drops it, and the provider would wait for it
  # forever. The policy is covered by the mocked terraform tests.
  redrive_allow_policy = false
  # The idempotency store's table, with TTL; deletion protection off so the test's
  # moto state can be thrown away.
  store_table               = true
  store_deletion_protection = false

  # The claim check's bucket, with its lifecycle rule; the library offloads to it.
  payload_bucket = {}

  # A second, higher-priority queue of the app, with its own receive limit.
  queues = {
    critical = { max_receive_count = 2, visibility_timeout_seconds = 6 }
  }
}

output "cloudqueue_url" {
  value = module.queue.cloudqueue_url
}

output "queue_url" {
  value = module.queue.queue_url
}

output "dlq_url" {
  value = module.queue.dlq_url
}

output "dlq_arn" {
  value = module.queue.dlq_arn
}

output "role_name" {
  value = module.queue.role_name
}

output "max_receive_count" {
  value = module.queue.max_receive_count
}

output "scheduler_role_arn" {
  value = module.queue.scheduler_role_arn
}

output "cloudqueue_store_url" {
  value = module.queue.cloudqueue_store_url
}

output "store_table_name" {
  value = module.queue.store_table_name
}

output "lambda_environment" {
  value = module.queue.lambda_environment
}

output "payload_store_url" {
  value = module.queue.payload_store_url
}

output "payload_bucket_arn" {
  value = module.queue.payload_bucket_arn
}

output "payload_expiration_days" {
  value = module.queue.payload_expiration_days
}

output "cloudqueue_urls" {
  value = module.queue.cloudqueue_urls
}

output "queue_arns" {
  value = module.queue.queue_arns
}

output "dlq_urls" {
  value = module.queue.dlq_urls
}
