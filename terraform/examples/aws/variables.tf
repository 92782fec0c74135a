variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "package_zip" {
  description = "The deployment package that build.sh writes."
  type        = string
  default     = "build/orders-lambda.zip"
}

# From orders.auto.tfvars (cloudqueue terraform-vars samples.orders.jobs:app aws-sqs-lambda).

variable "max_receive_count" {
  description = "Deliveries before dead letters: the jobs' largest cq.Retry(attempts=N)."
  type        = number
}

variable "fifo" {
  description = "FIFO queue: true when a job has an ordering_key."
  type        = bool
}

variable "allow_send_to_queue" {
  description = "The function may send to its own queue: delays over 15 minutes hop through it (true for a standard queue)."
  type        = bool
}
