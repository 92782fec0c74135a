variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the function."
  type        = string
  default     = "europe-west1"
}

variable "source_zip" {
  description = "The function's source package that ../gcp-function/build.sh writes."
  type        = string
  default     = "../build/orders-function.zip"
}

variable "kms_key_name" {
  description = "Customer-managed key for the topics (null: Google-managed)."
  type        = string
  default     = null
}

# From orders.auto.tfvars (cloudqueue terraform-vars samples.orders.jobs:app gcp-pubsub).

variable "max_delivery_attempts" {
  description = "Deliveries before dead letters: the jobs' largest cq.Retry(attempts=N), at least 5."
  type        = number
}

variable "minimum_backoff_seconds" {
  description = "The jobs' shortest Backoff initial."
  type        = number
}

variable "maximum_backoff_seconds" {
  description = "The jobs' longest Backoff maximum (at most 600)."
  type        = number
}

variable "enable_message_ordering" {
  description = "true when a job has an ordering_key."
  type        = bool
}
