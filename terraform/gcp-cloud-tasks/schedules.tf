# Cron schedules declared in code (@app.job(schedule=cq.Cron(...))): one Cloud Scheduler
# job each. `cloudqueue terraform-vars` writes var.schedules. Cloud Scheduler sends a fixed
# body; where it goes is var.schedules_target:
#   - "queue": it creates a task on the job's queue through the Cloud Tasks API, so a
#     firing is retried, counted and dead-lettered like any other task; the task carries
#     no slot time, so every firing is a new job without a per-slot key;
#   - "function": it POSTs the body to target_url with the invoker's OIDC token and the
#     X-CloudScheduler-ScheduleTime header, from which the shim makes the slot's job id and
#     idempotency key (cron:<job>:<schedule>:<slot UTC>); Cloud Scheduler retries it.

locals {
  tasks_api             = "https://cloudtasks.googleapis.com/v2"
  schedules_to_function = var.schedules_target == "function"
  # the scheduler's own account creates the tasks (none when firings go to the function)
  scheduler_account = length(var.schedules) > 0 && !local.schedules_to_function
  # the queues the schedules create tasks on, besides the module's own
  scheduled_queues = toset([for s in var.schedules : s.queue if s.queue != null && !local.schedules_to_function])
}

resource "google_service_account" "scheduler" {
  count = local.scheduler_account ? 1 : 0

  project      = var.project
  account_id   = replace(substr(lower("${var.name}-cron"), 0, 30), "/-+$/", "")
  display_name = "cloudqueue: Cloud Scheduler enqueues the cron jobs of queue ${var.name}"
}

# The scheduler's account may create tasks on this queue only ...
resource "google_cloud_tasks_queue_iam_member" "scheduler" {
  count = local.scheduler_account ? 1 : 0

  project  = var.project
  location = var.location
  name     = google_cloud_tasks_queue.this.name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"

  lifecycle {
    replace_triggered_by = [google_cloud_tasks_queue.this.id, google_service_account.scheduler[0].id]
  }
}

# ... and on the app's other queues its schedules name ...
resource "google_cloud_tasks_queue_iam_member" "scheduler_queues" {
  for_each = local.scheduled_queues

  project  = var.project
  location = var.location
  name     = google_cloud_tasks_queue.queues[each.key].name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"

  lifecycle {
    replace_triggered_by = [google_cloud_tasks_queue.queues[each.key].id, google_service_account.scheduler[0].id]
  }
}

# ... with the invoker's OIDC token, which needs actAs on the invoker.
resource "google_service_account_iam_member" "scheduler_acts_as_invoker" {
  count = local.scheduler_account ? 1 : 0

  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.scheduler[0].email}"

  lifecycle {
    replace_triggered_by = [google_service_account.invoker.id, google_service_account.scheduler[0].id]
  }
}

resource "google_cloud_scheduler_job" "this" {
  for_each = var.schedules

  project          = var.project
  region           = coalesce(var.scheduler_region, var.location)
  name             = "${var.name}-${each.key}"
  description      = "cloudqueue cron: ${each.key}"
  schedule         = each.value.expression
  time_zone        = each.value.timezone
  paused           = !var.schedules_enabled
  attempt_deadline = local.schedules_to_function ? "${var.schedule_attempt_deadline_seconds}s" : "30s"

  retry_config {
    retry_count = var.schedule_retry_count
  }

  http_target {
    http_method = "POST"
    uri         = local.schedules_to_function ? var.target_url : "${local.tasks_api}/${each.value.queue == null ? google_cloud_tasks_queue.this.id : google_cloud_tasks_queue.queues[each.value.queue].id}/tasks"
    body = local.schedules_to_function ? base64encode(each.value.body) : base64encode(jsonencode({
      task = {
        httpRequest = {
          url        = var.target_url
          httpMethod = "POST"
          headers    = { "Content-Type" = "application/json" }
          body       = base64encode(each.value.body)
        }
      }
    }))
    headers = { "Content-Type" = "application/json" }

    # "queue": the Cloud Tasks API, as the scheduler's account
    dynamic "oauth_token" {
      for_each = local.schedules_to_function ? [] : [1]
      content {
        service_account_email = google_service_account.scheduler[0].email
        scope                 = "https://www.googleapis.com/auth/cloud-platform"
      }
    }

    # "function": the function itself, with the token its tasks carry
    dynamic "oidc_token" {
      for_each = local.schedules_to_function ? [1] : []
      content {
        service_account_email = google_service_account.invoker.email
        audience              = local.audience
      }
    }
  }

  depends_on = [google_cloud_tasks_queue_iam_member.scheduler, google_cloud_tasks_queue_iam_member.scheduler_queues, google_service_account_iam_member.scheduler_acts_as_invoker]
}
