# Deploys the samples/orders jobs on Cloud Tasks + a 2nd-gen Cloud Function: the queue,
# its invoker account and dead-letter topic from the gcp-cloud-tasks module, and the
# function that runs the jobs.
#
#   bash ../gcp-function/build.sh      # ../build/orders-function.zip
#   terraform init && terraform apply -var project=MY_PROJECT
#
# orders.auto.tfvars holds the values that must agree with the jobs; regenerate it
# whenever their retry policies change:
#   cloudqueue terraform-vars samples.orders.jobs:app gcp-cloud-tasks > orders.auto.tfvars

terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.1: google_cloud_tasks_queue's http_target (the queue pins URL and token).
      version = ">= 6.1, < 8.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

locals {
  function_name = "orders-worker"
  # A 2nd-gen function answers on this URL too; it is known before the function
  # exists, so the function's own environment can carry it.
  function_url = "https://${var.region}-${var.project}.cloudfunctions.net/${local.function_name}"
}

resource "google_service_account" "function" {
  account_id   = "orders-worker"
  display_name = "orders: runs the jobs"
}

# The web app's account, which enqueues the jobs.
resource "google_service_account" "web" {
  account_id   = "orders-web"
  display_name = "orders: the web app, enqueues jobs"
}

module "orders_queue" {
  source = "../../gcp-cloud-tasks"

  project    = var.project
  location   = var.region
  name       = "orders"
  target_url = local.function_url
  # The function's attribute, not a string: Terraform grants run.invoker on its
  # Cloud Run service only once the function (and so the service) exists.
  target_service = google_cloudfunctions2_function.worker.name

  max_attempts        = var.max_attempts
  min_backoff_seconds = var.min_backoff_seconds
  max_backoff_seconds = var.max_backoff_seconds
  max_doublings       = var.max_doublings

  max_dispatches_per_second = 50
  max_concurrent_dispatches = 20

  # The function enqueues too: delays longer than 30 days hop through the queue.
  enqueuers = [
    "serviceAccount:${google_service_account.web.email}",
    "serviceAccount:${google_service_account.function.email}",
  ]
  function_service_account = google_service_account.function.email

  labels = { app = "orders" }

  # The claim check: payloads over the queue's limit go to a bucket of their own, whose
  # usage logs join the source bucket's.
  payload_bucket = {
    location   = var.region
    log_bucket = google_storage_bucket.source_logs.name
  }
}

# Cloud Storage's data-access audit logs are off by default, so the source bucket keeps
# usage logs (who read or wrote which package) in a bucket of their own.
resource "google_storage_bucket" "source_logs" {
  #checkov:skip=CKV_GCP_62:this bucket is the access-log sink of the source bucket and holds only the usage logs Cloud Storage writes into it; logging its own access would only record those writes
  name                        = "${var.project}-orders-source-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
}

# Cloud Storage delivers usage logs as this group.
resource "google_storage_bucket_iam_member" "source_logs_writer" {
  bucket = google_storage_bucket.source_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket" "source" {
  name                        = "${var.project}-orders-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  logging {
    log_bucket = google_storage_bucket.source_logs.name
  }

  depends_on = [google_storage_bucket_iam_member.source_logs_writer]
}

resource "google_storage_bucket_object" "source" {
  name   = "orders-function-${filemd5(var.source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip
}

resource "google_cloudfunctions2_function" "worker" {
  name     = local.function_name
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = "handler"

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory      = "256M"
    timeout_seconds       = 60
    max_instance_count    = 20
    service_account_email = google_service_account.function.email
    # Cloud Tasks requests count as internal traffic of the project.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    environment_variables = merge(module.orders_queue.function_environment, {
      CLOUDQUEUE_FUNCTION_TIMEOUT = "60"
    })
  }

  labels = { app = "orders" }
}
