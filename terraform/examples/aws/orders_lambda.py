"""Lambda entry point for the samples/orders jobs: ``orders_lambda.handler``."""

import cloudqueue_aws

from samples.orders.jobs import app

handler = cloudqueue_aws.lambda_handler(app)
