# Cron schedules declared in code (@app.job(schedule=cq.Cron(...))): one Cloud Scheduler
# job each. Cloud Scheduler sends a fixed body; where it goes is var.schedules_target:
#   - "topic": it publishes the job's envelope to the topic, so a firing is pushed, retried
#     and dead-lettered like any other message. Cloud Scheduler publishes as its service
#     agent (service-<project number>@gcp-sa-cloudscheduler.iam.gserviceaccount.com), which
#     the grant below lets publish to this topic only. The message carries no slot time
#     (no attribute of Cloud Scheduler's; its publish time is the firing's), so every
#     firing is a new job without a per-slot key;
#   - "function": it POSTs the body to push_endpoint with the push account's OIDC token and
#     the X-CloudScheduler-ScheduleTime header, from which the shim makes the slot's job id
#     and idempotency key (cron:<job>:<schedule>:<slot UTC>); Cloud Scheduler retries it.

locals {
  schedules_to_function = var.schedules_target == "function"
  schedules_to_topic    = length(var.schedules) > 0 && !local.schedules_to_function
}

resource "google_pubsub_topic_iam_member" "scheduler_publishes" {
  count = local.schedules_to_topic ? 1 : 0

  project = var.project
  topic   = google_pubsub_topic.this.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  lifecycle {
    replace_triggered_by = [google_pubsub_topic.this.id]
  }
}

resource "google_pubsub_topic_iam_member" "scheduler_publishes_queues" {
  for_each = toset([for s in var.schedules : s.queue if s.queue != null && !local.schedules_to_function])

  project = var.project
  topic   = google_pubsub_topic.queues[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  lifecycle {
    replace_triggered_by = [google_pubsub_topic.queues[each.key].id]
  }
}

resource "google_cloud_scheduler_job" "this" {
  for_each = var.schedules

  project     = var.project
  region      = coalesce(var.scheduler_region, var.location, "unset")
  name        = "${var.name}-${each.key}"
  description = "cloudqueue cron: ${each.key}"
  schedule    = each.value.expression
  time_zone   = each.value.timezone
  paused      = !var.schedules_enabled

  attempt_deadline = local.schedules_to_function ? "${var.schedule_attempt_deadline_seconds}s" : null

  retry_config {
    retry_count = var.schedule_retry_count
  }

  dynamic "pubsub_target" {
    for_each = local.schedules_to_function ? [] : [1]
    content {
      topic_name = each.value.queue == null ? google_pubsub_topic.this.id : google_pubsub_topic.queues[each.value.queue].id
      data       = base64encode(each.value.body)
    }
  }

  # "function": the push endpoint itself, with the token its pushes carry
  dynamic "http_target" {
    for_each = local.schedules_to_function ? [1] : []
    content {
      http_method = "POST"
      uri         = var.push_endpoint
      body        = base64encode(each.value.body)
      headers     = { "Content-Type" = "application/json" }

      oidc_token {
        service_account_email = google_service_account.push.email
        audience              = local.audience
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.scheduler_region != null || var.location != null
      error_message = "schedules need a Cloud Scheduler region: set scheduler_region (or location)."
    }
  }

  depends_on = [google_pubsub_topic_iam_member.scheduler_publishes, google_pubsub_topic_iam_member.scheduler_publishes_queues]
}
