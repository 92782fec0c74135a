# Cron schedules declared in code (@app.job(schedule=cq.Cron(...))): one Cloud Scheduler
# job each, publishing the job's envelope to the topic, so a firing is pushed, retried and
# dead-lettered like any other message. Cloud Scheduler publishes as its service agent
# (service-<project number>@gcp-sa-cloudscheduler.iam.gserviceaccount.com), which the
# grant below lets publish to this topic only. Cloud Scheduler sends a fixed body: every
# firing is a new job.

resource "google_pubsub_topic_iam_member" "scheduler_publishes" {
  count = length(var.schedules) == 0 ? 0 : 1

  project = var.project
  topic   = google_pubsub_topic.this.name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-cloudscheduler.iam.gserviceaccount.com"

  lifecycle {
    replace_triggered_by = [google_pubsub_topic.this.id]
  }
}

resource "google_pubsub_topic_iam_member" "scheduler_publishes_queues" {
  for_each = toset([for s in var.schedules : s.queue if s.queue != null])

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

  retry_config {
    retry_count = 3
  }

  pubsub_target {
    topic_name = each.value.queue == null ? google_pubsub_topic.this.id : google_pubsub_topic.queues[each.value.queue].id
    data       = base64encode(each.value.body)
  }

  lifecycle {
    precondition {
      condition     = var.scheduler_region != null || var.location != null
      error_message = "schedules need a Cloud Scheduler region: set scheduler_region (or location)."
    }
  }

  depends_on = [google_pubsub_topic_iam_member.scheduler_publishes, google_pubsub_topic_iam_member.scheduler_publishes_queues]
}
