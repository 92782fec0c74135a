# More queues for an app with several (cq.App(queues={...})): one topic per entry of
# var.queues with its push subscription (same endpoint and token as the module's own),
# its own retry and dead-letter policy, and its own dead-letter topic and subscription,
# with the service agent's grants. The push shim tells the queues apart by the
# subscription a push comes from.

locals {
  queues = {
    for key, q in var.queues : key => {
      topic                   = "${var.name}-${key}"
      subscription            = "${var.name}-${key}-push"
      dead_letters            = "${var.name}-${key}-dead-letters"
      max_delivery_attempts   = coalesce(q.max_delivery_attempts, var.max_delivery_attempts)
      minimum_backoff_seconds = coalesce(q.minimum_backoff_seconds, var.minimum_backoff_seconds)
      maximum_backoff_seconds = coalesce(q.maximum_backoff_seconds, var.maximum_backoff_seconds)
      ack_deadline_seconds    = coalesce(q.ack_deadline_seconds, var.ack_deadline_seconds)
      enable_message_ordering = q.enable_message_ordering == null ? var.enable_message_ordering : q.enable_message_ordering
    }
  }
  # every queue's backend URL, by app queue name
  cloudqueue_urls = merge({ default = local.cloudqueue_url }, {
    for key, q in local.queues : key => join("", [
      "pubsub://${var.project}/${google_pubsub_topic.queues[key].name}",
      "?subscription=${google_pubsub_subscription.queues[key].name}",
      "&dead_letter_topic=${google_pubsub_topic.queues_dead_letters[key].name}",
      q.enable_message_ordering ? "&ordering=true" : "",
    ])
  })
  # (queue key, publisher) pairs for the publish grants
  queue_publishers = { for pair in setproduct(keys(local.queues), var.publishers) : "${pair[0]} ${pair[1]}" => { queue = pair[0], member = pair[1] } }
}

resource "google_pubsub_topic" "queues" {
  for_each = local.queues

  project      = var.project
  name         = each.value.topic
  kms_key_name = var.kms_key_name
  labels       = var.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_topic" "queues_dead_letters" {
  for_each = local.queues

  project      = var.project
  name         = each.value.dead_letters
  kms_key_name = var.kms_key_name
  labels       = var.labels

  depends_on = [google_kms_crypto_key_iam_member.pubsub_agent]
}

resource "google_pubsub_subscription" "queues" {
  for_each = local.queues

  project                    = var.project
  name                       = each.value.subscription
  topic                      = google_pubsub_topic.queues[each.key].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  enable_message_ordering    = each.value.enable_message_ordering
  labels                     = var.labels

  push_config {
    push_endpoint = var.push_endpoint

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.audience
    }
  }

  retry_policy {
    minimum_backoff = "${each.value.minimum_backoff_seconds}s"
    maximum_backoff = "${each.value.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.queues_dead_letters[each.key].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  # A subscription without traffic must never expire and drop the queue.
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "queues_dead_letters" {
  for_each = local.queues

  project                    = var.project
  name                       = each.value.dead_letters
  topic                      = google_pubsub_topic.queues_dead_letters[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter_retention_seconds}s"
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "pubsub_agent_publishes_queues_dead_letters" {
  for_each = local.queues

  project = var.project
  topic   = google_pubsub_topic.queues_dead_letters[each.key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.queues_dead_letters[each.key].id]
  }
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_queues_originals" {
  for_each = local.queues

  project      = var.project
  subscription = google_pubsub_subscription.queues[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent

  lifecycle {
    # A replaced subscription starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_subscription.queues[each.key].id]
  }
}

resource "google_pubsub_topic_iam_member" "queues_publishers" {
  for_each = local.queue_publishers

  project = var.project
  topic   = google_pubsub_topic.queues[each.value.queue].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member

  lifecycle {
    # A replaced topic starts with no grants, under the same name: grant again.
    replace_triggered_by = [google_pubsub_topic.queues[each.value.queue].id]
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
