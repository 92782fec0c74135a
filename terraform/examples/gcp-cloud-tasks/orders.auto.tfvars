# cloudqueue terraform-vars for app 'orders', module gcp-cloud-tasks.
# Jobs: generate_invoice (5 attempts), send_confirmation_email (3 attempts),
# update_analytics (5 attempts).
# The jobs' attempts differ (3, 5): max_attempts follows the largest (5).
# A job with fewer attempts is dead-lettered by the library after its own count.
# The jobs' backoffs differ: the queue has one retry policy, so min_backoff_seconds
# takes the shortest initial wait and max_backoff_seconds the longest maximum.
max_attempts        = 5
min_backoff_seconds = 0.2
max_backoff_seconds = 30
max_doublings       = 8
