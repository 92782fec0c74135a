# cloudqueue terraform-vars for app 'orders', module gcp-pubsub.
# Jobs: generate_invoice (5 attempts), send_confirmation_email (3 attempts),
# update_analytics (5 attempts).
# The jobs' attempts differ (3, 5): max_delivery_attempts follows the largest (5).
# A job with fewer attempts is dead-lettered by the library after its own count.
# max_delivery_attempts = 5 attempts + 5 headroom (cloudqueue.retry.max_receives_for):
# receives that never start a job count too, so the queue's own redrive only catches
# messages no consumer ever settles.
# The jobs' backoffs differ: the queue has one retry policy, so minimum_backoff_seconds
# takes the shortest initial wait and maximum_backoff_seconds the longest maximum.
max_delivery_attempts   = 10
minimum_backoff_seconds = 0.2
maximum_backoff_seconds = 30
enable_message_ordering = false
