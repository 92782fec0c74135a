# A Cloud Tasks queue laid out the way cloudqueue's Cloud Tasks backend expects it:
#   - tasks are HTTP requests to target_url with an OIDC token minted for a dedicated
#     invoker account, which may invoke the target service and nothing else; the queue
#     pins both (http_target: uri_override enforced ALWAYS, oidc_token), so a task that
#     names another URL or audience is sent to target_url with the module's token anyway;
#   - the queue's retry_config carries the jobs' retry policy (Cloud Tasks has no
#     per-task retry), and max_attempts is the jobs' cq.Retry(attempts=N);
#   - Cloud Tasks has no dead-letter queue: on the last attempt the shim publishes the
#     message to a Pub/Sub topic and answers 2xx. A subscription keeps the dead letters.

locals {
  # A service account id is 6-30 of [a-z0-9-], starting with a letter, not ending in "-".
  invoker_account_id     = coalesce(var.invoker_account_id, replace(substr(lower("${var.name}-invoker"), 0, 30), "/-+$/", ""))
  audience               = coalesce(var.audience, var.target_url)
  dead_letter_topic_name = coalesce(var.dead_letter_topic_name, "${var.name}-dead-letters")
  # target_url in parts, for the queue's uri_override (host, port, path and query may
  # each be pinned; a part the URL lacks is null).
  target = regex("^https://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]+))?(?P<path>/[^?#]*)?(?:[?](?P<query>[^#]*))?$", var.target_url)
}

locals {
  cloudqueue_url = join("", [
    "cloudtasks://${var.project}/${var.location}/${google_cloud_tasks_queue.this.name}",
    "?target=${urlencode(var.target_url)}",
    "&service_account=${urlencode(google_service_account.invoker.email)}",
    "&audience=${urlencode(local.audience)}",
    "&dead_letter=${urlencode("pubsub://${var.project}/${google_pubsub_topic.dead_letters.name}?subscription=${google_pubsub_subscription.dead_letters.name}")}",
  ])
}

resource "google_cloud_tasks_queue" "this" {
  project  = var.project
  location = var.location
  name     = var.name

  # Every task of this queue goes to target_url with a token for the invoker, whatever
  # the task itself says: whoever may enqueue cannot point invoker-signed requests at
  # another URL or audience.
  http_target {
    http_method = "POST"

    uri_override {
      scheme                    = "HTTPS"
      host                      = local.target.host
      port                      = local.target.port
      uri_override_enforce_mode = "ALWAYS"

      path_override {
        path = coalesce(local.target.path, "/")
      }

      dynamic "query_override" {
        for_each = local.target.query == null ? [] : [local.target.query]

        content {
          query_params = query_override.value
        }
      }
    }

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.audience
    }
  }

  rate_limits {
    max_dispatches_per_second = var.max_dispatches_per_second
    max_concurrent_dispatches = var.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.max_attempts
    min_backoff        = "${var.min_backoff_seconds}s"
    max_backoff        = "${var.max_backoff_seconds}s"
    max_doublings      = var.max_doublings
    max_retry_duration = "${var.max_retry_duration_seconds}s"
  }

  stackdriver_logging_config {
    sampling_ratio = var.logging_sampling_ratio
  }
}

resource "google_service_account" "invoker" {
  project      = var.project
  account_id   = local.invoker_account_id
  display_name = "cloudqueue: invokes ${var.target_service} for queue ${var.name}"
}

# The invoker may invoke the target service only.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project
  location = var.location
  name     = var.target_service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.invoker.email}"

  lifecycle {
    # A replaced invoker account has a new unique id: the old grant names the deleted one.
    replace_triggered_by = [google_service_account.invoker.id]
  }
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = toset(var.enqueuers)

  project  = var.project
  location = var.location
  name     = google_cloud_tasks_queue.this.name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value

  lifecycle {
    # A replaced queue starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_cloud_tasks_queue.this.id]
  }
}

# Creating a task with an OIDC token for the invoker needs iam.serviceAccounts.actAs on it.
resource "google_service_account_iam_member" "enqueuer_acts_as_invoker" {
  for_each = toset(var.enqueuers)

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value

  lifecycle {
    # A replaced account starts with no grants, under the same email: grant again.
    replace_triggered_by = [google_service_account.invoker.id]
  }
}

resource "google_pubsub_topic" "dead_letters" {
  project      = var.project
  name         = local.dead_letter_topic_name
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

# Keeps the dead letters until they are inspected or redriven.
resource "google_pubsub_subscription" "dead_letters" {
  project                    = var.project
  name                       = local.dead_letter_topic_name
  topic                      = google_pubsub_topic.dead_letters.id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"
  retain_acked_messages      = false
  labels                     = var.labels

  expiration_policy {
    ttl = ""
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
