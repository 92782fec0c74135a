# cloudqueue terraform-vars for app 'orders', module aws-sqs-lambda.
# Jobs: generate_invoice (5 attempts), send_confirmation_email (3 attempts),
# update_analytics (5 attempts).
# The jobs' attempts differ (3, 5): max_receive_count follows the largest (5).
# A job with fewer attempts is dead-lettered by the library after its own count.
# max_receive_count = 5 attempts + 5 headroom (cloudqueue.retry.max_receives_for):
# receives that never start a job count too, so the queue's own redrive only catches
# messages no consumer ever settles.
# allow_send_to_queue: any job on a standard queue can be enqueued with a delay over 15
# minutes, which hops through the queue: the function must be able to send to it.
max_receive_count   = 10
fifo                = false
allow_send_to_queue = true
