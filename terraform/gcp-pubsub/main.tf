# A Pub/Sub topic with a push subscription, laid out the way cloudqueue's Pub/Sub
# backend and push shim expect it:
#   - pushes go to an https endpoint with an OIDC token the shim verifies;
#   - the subscription's retry_policy carries the jobs' backoff, and its
#     dead_letter_policy moves a message after max_delivery_attempts (the shim reads the
#     attempt from deliveryAttempt and dead-letters a job after its own attempts; the
#     policy keeps headroom above them for deliveries that never start a job);
#   - the shim publishes poison messages and cq.Permanent failures to the dead-letter
#     topic itself; a subscription on that topic keeps every dead letter;
#   - the Pub/Sub service agent may publish dead letters and acknowledge the originals.

data "google_project" "this" {
  project_id = var.project
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # A service account id is 6-30 of [a-z0-9-], starting with a letter, not ending in "-".
  push_account_id   = coalesce(var.push_service_account_id, replace(substr(replace(lower("${var.name}-push"), "/[^a-z0-9-]/", "-"), 0, 30), "/-+$/", ""))
  audience          = coalesce(var.audience, var.push_endpoint)
  subscription_name = "${var.name}-push"
  dead_letter_name  = "${var.name}-dead-letters"
  cloudqueue_url = join("", [
    "pubsub://${var.project}/${google_pubsub_topic.this.name}",
    "?subscription=${google_pubsub_subscription.push.name}",
    "&dead_letter_topic=${google_pubsub_topic.dead_letters.name}",
    var.enable_message_ordering ? "&ordering=true" : "",
  ])
  kms_grant_required = var.kms_key_name != null
}

# With a customer-managed key the service agent must be able to use it before the
# topics are created.
resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  count = local.kms_grant_required ? 1 : 0

  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = local.pubsub_agent
}

resource "google_pubsub_topic" "this" {
  project      = var.project
  name         = var.name
  kms_key_name = var.kms_key_name
  labels       = var.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "dead_letters" {
  project      = var.project
  name         = local.dead_letter_name
  kms_key_name = var.kms_key_name
  labels       = var.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_service_account" "push" {
  project      = var.project
  account_id   = local.push_account_id
  display_name = "cloudqueue: pushes topic ${var.name} to its function"
}

resource "google_pubsub_subscription" "push" {
  project                    = var.project
  name                       = local.subscription_name
  topic                      = google_pubsub_topic.this.id
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  enable_message_ordering    = var.enable_message_ordering
  labels                     = var.labels

  push_config {
    push_endpoint = var.push_endpoint

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.minimum_backoff_seconds}s"
    maximum_backoff = "${var.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # A subscription without traffic must never expire and drop the queue.
  expiration_policy {
    ttl = ""
  }
}

# Keeps the dead letters until they are inspected or redriven.
resource "google_pubsub_subscription" "dead_letters" {
  project                    = var.project
  name                       = local.dead_letter_name
  topic                      = google_pubsub_topic.dead_letters.id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}
