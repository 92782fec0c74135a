output "cloudqueue_url" {
  description = "Set CLOUDQUEUE_URL to this where the orders app enqueues."
  value       = module.orders_queue.cloudqueue_url
}

output "function_uri" {
  description = "The function's Cloud Run URI."
  value       = google_cloudfunctions2_function.worker.service_config[0].uri
}

output "dead_letter_subscription" {
  description = "Where the dead letters are kept."
  value       = module.orders_queue.dead_letter_subscription
}
