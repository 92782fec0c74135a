# The aws-sqs-lambda module applied with its function and event source mapping, against
# moto server on loopback, the way terraform/examples/aws wires them: the function takes
# the module's role, and the module takes the function's attribute, so a first apply
# creates the function before the mapping. tests/terraform/test_aws_lambda_apply.py
# applies it and runs `cloudqueue doctor` on what it made. No message is sent: moto would
# run the mapped function in docker.

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
  description = "Receives before dead letters."
  type        = number
}

variable "package_zip" {
  description = "Any deployment package: moto stores it and never runs it here."
  type        = string
}

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  skip_requesting_account_id  = true

  endpoints {
    iam    = var.endpoint
    lambda = var.endpoint
    sqs    = var.endpoint
    sts    = var.endpoint
  }
}

locals {
  function_timeout = 10
  batching_window  = 1
}

module "queue" {
  source = "../terraform/aws-sqs-lambda"

  name              = var.name
  max_receive_count = var.max_receive_count

  function_name              = aws_lambda_function.worker.function_name
  function_timeout_seconds   = local.function_timeout
  visibility_timeout_seconds = 6 * local.function_timeout + local.batching_window

  batch_size                         = 10
  maximum_batching_window_in_seconds = local.batching_window
  maximum_concurrency                = 5

  # moto accepts RedriveAllowPolicy but drops it, and the provider would wait for it
  # forever. The policy is covered by the mocked terraform tests.
  redrive_allow_policy = false
}

resource "aws_lambda_function" "worker" {
  function_name                  = "${var.name}-worker"
  role                           = module.queue.role_arn
  runtime                        = "python3.11"
  handler                        = "handler.handler"
  filename                       = var.package_zip
  source_code_hash               = filebase64sha256(var.package_zip)
  timeout                        = local.function_timeout
  reserved_concurrent_executions = 6

  environment {
    variables = module.queue.lambda_environment
  }
}

output "cloudqueue_url" {
  value = module.queue.cloudqueue_url
}

output "event_source_mapping_uuid" {
  value = module.queue.event_source_mapping_uuid
}

output "function_name" {
  value = aws_lambda_function.worker.function_name
}
