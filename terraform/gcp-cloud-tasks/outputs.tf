output "queue_id" {
  description = "Full id of the queue (projects/P/locations/L/queues/Q)."
  value       = google_cloud_tasks_queue.this.id
}

output "queue_name" {
  description = "Name of the queue."
  value       = google_cloud_tasks_queue.this.name
}

output "invoker_email" {
  description = "Email of the invoker service account the tasks' OIDC tokens are minted for."
  value       = google_service_account.invoker.email
}

output "audience" {
  description = "Audience of the tasks' OIDC tokens."
  value       = local.audience
}

output "dead_letter_topic" {
  description = "Name of the dead-letter topic."
  value       = google_pubsub_topic.dead_letters.name
}

output "dead_letter_subscription" {
  description = "Name of the subscription that keeps the dead letters."
  value       = google_pubsub_subscription.dead_letters.name
}

output "max_attempts" {
  description = "Tries per task; equals the jobs' cq.Retry(attempts=N)."
  value       = var.max_attempts
}

output "cloudqueue_url" {
  description = "The backend URL for cq.App(..., backend=...) / $CLOUDQUEUE_URL (query values are URL-encoded)."
  value       = local.cloudqueue_url
}

output "function_environment" {
  description = "Environment variables for the function (merge into its environment): the backend URL, and the payload and idempotency stores' URLs when the module makes them."
  value = merge({
    CLOUDQUEUE_URL = local.cloudqueue_url
    }, local.payloads ? {
    CLOUDQUEUE_PAYLOAD_STORE = "gs://${local.payload_bucket_name}/${local.payload_prefix}"
  } : {}, local.store_url == null ? {} : { CLOUDQUEUE_STORE_URL = local.store_url })
}

output "cloudqueue_store_url" {
  description = "The store URL for cq.App(..., store=...) / $CLOUDQUEUE_STORE_URL (null without store_collection)."
  value       = local.store_url
}

output "payload_store_url" {
  description = "The claim check's payload_store URL for cq.App (null without payload_bucket)."
  value       = local.payloads ? "gs://${local.payload_bucket_name}/${local.payload_prefix}" : null
}

output "payload_expiration_days" {
  description = "Age at which the lifecycle rule deletes payload objects: it outlives every message that can point at one."
  value       = local.payload_expiration_days
}

output "queue_ids" {
  description = "Full id of every queue by app queue name: \"default\" (the module's own) and each of var.queues."
  value       = merge({ default = google_cloud_tasks_queue.this.id }, { for key, q in google_cloud_tasks_queue.queues : key => q.id })
}

output "cloudqueue_urls" {
  description = "The backend URL of every queue by app queue name, for cq.App(..., queues=...) (query values are URL-encoded)."
  value       = local.cloudqueue_urls
}
