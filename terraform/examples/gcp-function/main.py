"""Cloud Function entry point for the samples/orders jobs (--entry-point=handler)."""

import cloudqueue_gcp

from samples.orders.jobs import app

handler = cloudqueue_gcp.http_handler(app)
