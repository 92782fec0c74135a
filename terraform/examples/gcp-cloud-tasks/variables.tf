variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the queue and the function."
  type        = string
  default     = "europe-west1"
}

variable "source_zip" {
  description = "The function's source package that ../gcp-function/build.sh writes."
  type        = string
  default     = "../build/orders-function.zip"
}

# From orders.auto.tfvars (cloudqueue terraform-vars samples.orders.jobs:app gcp-cloud-tasks).

variable "max_attempts" {
  description = "Tries per task: the jobs' largest cq.Retry(attempts=N)."
  type        = number
}

variable "min_backoff_seconds" {
  description = "The jobs' shortest Backoff initial."
  type        = number
}

variable "max_backoff_seconds" {
  description = "The jobs' longest Backoff maximum."
  type        = number
}

variable "max_doublings" {
  description = "Doublings from the initial to the maximum backoff."
  type        = number
}
