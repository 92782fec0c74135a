output "topic_id" {
  description = "Full id of the topic (projects/P/topics/T)."
  value       = google_pubsub_topic.this.id
}

output "topic_name" {
  description = "Name of the topic jobs are published to."
  value       = google_pubsub_topic.this.name
}

output "subscription_name" {
  description = "Name of the push subscription."
  value       = google_pubsub_subscription.push.name
}

output "dead_letter_topic" {
  description = "Name of the dead-letter topic."
  value       = google_pubsub_topic.dead_letters.name
}

output "dead_letter_subscription" {
  description = "Name of the subscription that keeps the dead letters."
  value       = google_pubsub_subscription.dead_letters.name
}

output "push_service_account_email" {
  description = "Email of the account the pushes' OIDC tokens are minted for (the shim checks it)."
  value       = google_service_account.push.email
}

output "audience" {
  description = "Audience of the pushes' OIDC tokens."
  value       = local.audience
}

output "max_delivery_attempts" {
  description = "Deliveries before Pub/Sub dead-letters a message (the jobs' attempts plus headroom)."
  value       = var.max_delivery_attempts
}

output "cloudqueue_url" {
  description = "The backend URL for cq.App(..., backend=...) / $CLOUDQUEUE_URL."
  value       = local.cloudqueue_url
}

output "function_environment" {
  description = "Environment variables for the function (merge into its environment): the backend URL, what the shim checks the pushes' OIDC tokens against, and the payload and idempotency stores' URLs when the module makes them."
  value = merge({
    CLOUDQUEUE_URL                  = local.cloudqueue_url
    CLOUDQUEUE_PUSH_AUDIENCE        = local.audience
    CLOUDQUEUE_PUSH_SERVICE_ACCOUNT = google_service_account.push.email
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

output "topic_ids" {
  description = "Full id of every topic by app queue name: \"default\" (the module's own) and each of var.queues."
  value       = merge({ default = google_pubsub_topic.this.id }, { for key, t in google_pubsub_topic.queues : key => t.id })
}

output "cloudqueue_urls" {
  description = "The backend URL of every queue by app queue name, for cq.App(..., queues=...)."
  value       = local.cloudqueue_urls
}
