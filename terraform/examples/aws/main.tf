# Deploys the samples/orders jobs on SQS + Lambda: the queue and its DLQ from the
# aws-sqs-lambda module, and the function that runs the jobs.
#
#   bash build.sh                      # the deployment package, build/orders-lambda.zip
#   terraform init && terraform apply
#
# orders.auto.tfvars holds the values that must agree with the jobs; regenerate it
# whenever their retry policies change:
#   cloudqueue terraform-vars samples.orders.jobs:app aws-sqs-lambda > orders.auto.tfvars

terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.83, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

locals {
  function_name    = "orders-worker"
  function_timeout = 30
  batching_window  = 1
}

module "orders_queue" {
  source = "../../aws-sqs-lambda"

  name              = "orders"
  fifo              = var.fifo
  max_receive_count = var.max_receive_count
  # Delays over 15 minutes hop through the queue: the function sends them back to it.
  allow_send_to_queue = var.allow_send_to_queue

  # The function's attribute, not a string: Terraform then creates the function before
  # the event source mapping, which Lambda refuses for a function that does not exist yet.
  function_name            = aws_lambda_function.worker.function_name
  function_timeout_seconds = local.function_timeout
  # Records are hidden while the batching window gathers them: it counts too.
  visibility_timeout_seconds = 6 * local.function_timeout + local.batching_window

  batch_size                         = 10
  maximum_batching_window_in_seconds = local.batching_window
  maximum_concurrency                = 10

  # The claim check: payloads over SQS's 256 KiB go to S3 under the prefix "orders";
  # the app takes payload_store = module.orders_queue.payload_store_url.
  payload_bucket = {}

  tags = { app = "orders" }
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_116:the function is invoked by an SQS event source mapping, never asynchronously; failed jobs go to the queue's own dead-letter queue
  #checkov:skip=CKV_AWS_117:the function reaches only the public SQS endpoint; put it in a VPC when the jobs need private resources
  #checkov:skip=CKV_AWS_173:the environment holds only the queue's address, no secret
  #checkov:skip=CKV_AWS_272:code signing needs a signing profile of the deployer's own; add aws_lambda_code_signing_config in production
  function_name    = local.function_name
  role             = module.orders_queue.role_arn
  runtime          = "python3.11"
  handler          = "orders_lambda.handler"
  filename         = var.package_zip
  source_code_hash = filebase64sha256(var.package_zip)
  timeout          = local.function_timeout
  memory_size      = 256

  # Above the event source mapping's maximum_concurrency, so the mapping never throttles.
  reserved_concurrent_executions = 12

  environment {
    variables = module.orders_queue.lambda_environment
  }

  tracing_config {
    mode = "Active"
  }

  tags = { app = "orders" }
}

resource "aws_iam_role_policy_attachment" "worker_tracing" {
  role       = module.orders_queue.role_name
  policy_arn = "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"
}
