# cloudqueue terraform-vars for app 'orders', module aws-sqs-lambda.
# Jobs: generate_invoice (5 attempts), send_confirmation_email (3 attempts),
# update_analytics (5 attempts).
# The jobs' attempts differ (3, 5): max_receive_count takes the largest (5).
# A job with fewer attempts is dead-lettered by the library after its own count.
max_receive_count = 5
fifo              = false
