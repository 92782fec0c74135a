# The claim check's Cloud Storage bucket (optional): payloads larger than the queue
# takes go there under a prefix, the message carries a reference
# (cq.App(payload_store = output payload_store_url)).
#   - the consumer reads a job's object and deletes it once the job succeeded; retried
#     and dead-lettered messages keep theirs, so a redrive still finds it;
#   - a lifecycle rule on the prefix deletes what is left. Its age must outlive every
#     message that can still point at an object: the subscription's retention, then the dead-letter subscription's (a dead letter is a new message there).

locals {
  payloads            = var.payload_bucket != null
  payload_bucket_name = local.payloads ? coalesce(try(var.payload_bucket.name, null), "${var.project}-${var.name}-payloads") : null
  payload_prefix      = local.payloads ? trim(coalesce(try(var.payload_bucket.prefix, null), var.name), "/") : null
  # days a message can still point at its object
  payload_min_days        = ceil((var.message_retention_seconds + var.dead_letter_retention_seconds) / 86400) + (local.payloads ? try(var.payload_bucket.max_delay_days, 0) : 0)
  payload_expiration_days = local.payloads ? coalesce(try(var.payload_bucket.expiration_days, null), local.payload_min_days + 1) : null
  # grants on the prefix only (IAM conditions need uniform bucket-level access, which the bucket has)
  payload_condition = local.payloads ? "resource.name.startsWith(\"projects/_/buckets/${local.payload_bucket_name}/objects/${local.payload_prefix}/\")" : null
}

resource "google_storage_bucket" "payloads" {
  #checkov:skip=CKV_GCP_78:payload objects are immutable (named by their sha256) and deleted on purpose once their job succeeded; versioning would keep every payload the lifecycle rule is there to remove
  count = local.payloads && try(var.payload_bucket.create, true) ? 1 : 0

  project                     = var.project
  name                        = local.payload_bucket_name
  location                    = var.payload_bucket.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  lifecycle_rule {
    condition {
      age            = local.payload_expiration_days
      matches_prefix = ["${local.payload_prefix}/"]
    }

    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = try(var.payload_bucket.log_bucket, null) == null ? [] : [var.payload_bucket.log_bucket]

    content {
      log_bucket = logging.value
    }
  }

  lifecycle {
    precondition {
      condition     = local.payload_expiration_days > local.payload_min_days
      error_message = "payload_bucket.expiration_days must be more than the days a message can still point at its payload (the subscription's retention, then the dead-letter subscription's (a dead letter is a new message there)): the rule would delete payloads still in use."
    }
  }
}

# The function reads a job's payload and deletes it after success (and may offload
# payloads of the jobs it enqueues): objectUser, on the prefix only.
resource "google_storage_bucket_iam_member" "function_uses_payloads" {
  count = local.payloads && var.function_service_account != null ? 1 : 0

  bucket = local.payload_bucket_name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${var.function_service_account}"

  condition {
    title      = "cloudqueue-payloads-${var.name}"
    expression = local.payload_condition
  }

  depends_on = [google_storage_bucket.payloads]
}

# Producers write payloads: objectCreator, on the prefix only.
resource "google_storage_bucket_iam_member" "publishers_offload_payloads" {
  for_each = local.payloads ? toset(var.publishers) : toset([])

  bucket = local.payload_bucket_name
  role   = "roles/storage.objectCreator"
  member = each.value

  condition {
    title      = "cloudqueue-payloads-${var.name}"
    expression = local.payload_condition
  }

  depends_on = [google_storage_bucket.payloads]
}
