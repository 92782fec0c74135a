# Who may do what. The Pub/Sub service agent's grants are what dead-lettering needs:
# it publishes the forwarded message and acknowledges the original.

resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letters.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.dead_letters.id]
  }
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_originals" {
  project      = var.project
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent

  lifecycle {
    # A replaced subscription starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_subscription.push.id]
  }
}

# Projects created before April 2021 need this for the service agent to mint the
# pushes' OIDC tokens; it is harmless elsewhere.
resource "google_service_account_iam_member" "pubsub_agent_mints_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent

  lifecycle {
    # A replaced account starts with no grants, under the same email: grant again.
    replace_triggered_by = [google_service_account.push.id]
  }
}

resource "google_cloud_run_v2_service_iam_member" "push_invokes_target" {
  count = var.target_service == null ? 0 : 1

  project  = var.project
  location = var.location
  name     = var.target_service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"

  lifecycle {
    # A replaced push account has a new unique id: the old grant names the deleted one.
    replace_triggered_by = [google_service_account.push.id]

    precondition {
      condition     = var.location != null
      error_message = "target_service needs location (the Cloud Run service's region)."
    }
  }
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = toset(var.publishers)

  project = var.project
  topic   = google_pubsub_topic.this.name
  role    = "roles/pubsub.publisher"
  member  = each.value

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.this.id]
  }
}

resource "google_pubsub_topic_iam_member" "function_writes_dead_letters" {
  count = var.function_service_account == null ? 0 : 1

  project = var.project
  topic   = google_pubsub_topic.dead_letters.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${var.function_service_account}"

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.dead_letters.id]
  }
}
