# More queues for an app with several (cq.App(queues={...})): one Cloud Tasks queue per
# entry of var.queues, pinned to the same target and invoker token as the module's own,
# with its own retry config and rate limits, and its own dead-letter topic and
# subscription. The shim tells the queues apart by X-CloudTasks-QueueName.

locals {
  queues = {
    for key, q in var.queues : key => {
      name                      = "${var.name}-${key}"
      dead_letters              = "${var.name}-${key}-dead-letters"
      max_attempts              = coalesce(q.max_attempts, var.max_attempts)
      min_backoff_seconds       = coalesce(q.min_backoff_seconds, var.min_backoff_seconds)
      max_backoff_seconds       = coalesce(q.max_backoff_seconds, var.max_backoff_seconds)
      max_doublings             = coalesce(q.max_doublings, var.max_doublings)
      max_dispatches_per_second = coalesce(q.max_dispatches_per_second, var.max_dispatches_per_second)
      max_concurrent_dispatches = coalesce(q.max_concurrent_dispatches, var.max_concurrent_dispatches)
    }
  }
  # every queue's backend URL, by app queue name
  cloudqueue_urls = merge({ default = local.cloudqueue_url }, {
    for key, q in google_cloud_tasks_queue.queues : key => join("", [
      "cloudtasks://${var.project}/${var.location}/${q.name}",
      "?target=${urlencode(var.target_url)}",
      "&service_account=${urlencode(google_service_account.invoker.email)}",
      "&audience=${urlencode(local.audience)}",
      "&dead_letter=${urlencode("pubsub://${var.project}/${google_pubsub_topic.queues_dead_letters[key].name}?subscription=${google_pubsub_subscription.queues_dead_letters[key].name}")}",
    ])
  })
  # (queue key, enqueuer) pairs for the enqueue grants
  queue_enqueuers = { for pair in setproduct(keys(local.queues), var.enqueuers) : "${pair[0]} ${pair[1]}" => { queue = pair[0], member = pair[1] } }
}

resource "google_cloud_tasks_queue" "queues" {
  for_each = local.queues

  project  = var.project
  location = var.location
  name     = each.value.name

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
    max_dispatches_per_second = each.value.max_dispatches_per_second
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = each.value.max_attempts
    min_backoff        = "${each.value.min_backoff_seconds}s"
    max_backoff        = "${each.value.max_backoff_seconds}s"
    max_doublings      = each.value.max_doublings
    max_retry_duration = "${var.max_retry_duration_seconds}s"
  }

  stackdriver_logging_config {
    sampling_ratio = var.logging_sampling_ratio
  }
}

resource "google_cloud_tasks_queue_iam_member" "queues_enqueuer" {
  for_each = local.queue_enqueuers

  project  = var.project
  location = var.location
  name     = google_cloud_tasks_queue.queues[each.value.queue].name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value.member

  lifecycle {
    # A replaced queue starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_cloud_tasks_queue.queues[each.value.queue].id]
  }
}

resource "google_pubsub_topic" "queues_dead_letters" {
  for_each = local.queues

  project      = var.project
  name         = each.value.dead_letters
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_subscription" "queues_dead_letters" {
  for_each = local.queues

  project                    = var.project
  name                       = each.value.dead_letters
  topic                      = google_pubsub_topic.queues_dead_letters[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"
  retain_acked_messages      = false
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "function_writes_queues_dead_letters" {
  for_each = var.function_service_account == null ? {} : local.queues

  project = var.project
  topic   = google_pubsub_topic.queues_dead_letters[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${var.function_service_account}"

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.queues_dead_letters[each.key].id]
  }
}
