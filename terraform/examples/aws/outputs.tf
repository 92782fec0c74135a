output "cloudqueue_url" {
  description = "Set CLOUDQUEUE_URL to this where the orders app enqueues."
  value       = module.orders_queue.cloudqueue_url
}

output "queue_url" {
  description = "URL of the orders queue."
  value       = module.orders_queue.queue_url
}

output "dlq_url" {
  description = "URL of the orders dead-letter queue."
  value       = module.orders_queue.dlq_url
}

output "function_name" {
  description = "Name of the function that runs the jobs."
  value       = aws_lambda_function.worker.function_name
}
