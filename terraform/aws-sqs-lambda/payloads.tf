# The claim check's bucket (optional): payloads larger than the queue takes go to
# S3 under a prefix, the message carries a reference (cq.App(payload_store="s3://...")).
#   - the consumer reads and deletes a job's object after the job succeeded; retried
#     and dead-lettered messages keep theirs, so a redrive still finds it;
#   - a lifecycle rule on the prefix removes what is left (a send that failed after the
#     upload, a delete that failed, dead letters nobody redrove). Its age must outlive
#     every message that can still point at an object: the queue's retention, then the
#     dead-letter queue's (a dead letter is a new message there), plus the longest
#     delay the producers use (a delayed job hops and starts a new retention).

locals {
  payloads            = var.payload_bucket != null
  payload_create      = local.payloads && try(var.payload_bucket.create, false)
  payload_bucket_name = local.payloads ? coalesce(try(var.payload_bucket.name, null), "${var.name}-payloads") : null
  payload_prefix      = local.payloads ? trim(coalesce(try(var.payload_bucket.prefix, null), var.name), "/") : null
  payload_bucket_arn  = local.payloads ? "arn:${data.aws_partition.current.partition}:s3:::${local.payload_bucket_name}" : null
  # days a message can still point at its object: the longest queue retention (the app's
  # queues share the prefix) + DLQ retention + longest delay
  payload_queue_retention = max(var.message_retention_seconds, [for q in local.queues : q.message_retention_seconds]...)
  payload_min_days = ceil((local.payload_queue_retention + var.dlq_message_retention_seconds) / 86400) + (
  local.payloads ? try(var.payload_bucket.max_delay_days, 0) : 0)
  payload_expiration_days = local.payloads ? coalesce(try(var.payload_bucket.expiration_days, null), local.payload_min_days + 1) : null
  payload_kms_key_arn     = local.payloads ? try(var.payload_bucket.kms_key_arn, null) : null
}

resource "aws_s3_bucket" "payloads" {
  #checkov:skip=CKV_AWS_21:payload objects are immutable (named by their sha256) and deleted on purpose once their job succeeded; versioning would keep every payload the lifecycle rule is there to remove
  #checkov:skip=CKV_AWS_144:a payload lives only as long as its message, and the queue is regional too; replicate the queue's region as a whole if needed
  #checkov:skip=CKV2_AWS_62:nothing reacts to payload objects: the queue carries the events
  #checkov:skip=CKV_AWS_145:encrypted at rest with SSE-S3 by default; set payload_bucket.kms_key_arn for a customer-managed key (as kms_key_arn does for the queues)
  #checkov:skip=CKV_AWS_18:access logging goes to payload_bucket.access_log_bucket when given (aws_s3_bucket_logging.payloads); the module does not own a log sink
  count = local.payload_create ? 1 : 0

  bucket = local.payload_bucket_name
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "payloads" {
  count = local.payload_create ? 1 : 0

  bucket                  = aws_s3_bucket.payloads[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "payloads" {
  count = local.payload_create ? 1 : 0

  bucket = aws_s3_bucket.payloads[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "payloads" {
  count = local.payload_create ? 1 : 0

  bucket = aws_s3_bucket.payloads[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.payload_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = local.payload_kms_key_arn
    }
    bucket_key_enabled = local.payload_kms_key_arn != null
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "payloads" {
  count = local.payload_create ? 1 : 0

  bucket = aws_s3_bucket.payloads[0].id

  rule {
    id     = "cloudqueue-payloads-expire"
    status = "Enabled"

    filter {
      prefix = "${local.payload_prefix}/"
    }

    expiration {
      days = local.payload_expiration_days
    }
  }

  # Uploads of large payloads that never completed: anywhere in the bucket.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "payloads" {
  count = local.payload_create && try(var.payload_bucket.access_log_bucket, null) != null ? 1 : 0

  bucket        = aws_s3_bucket.payloads[0].id
  target_bucket = var.payload_bucket.access_log_bucket
  target_prefix = "${local.payload_bucket_name}/"
}

data "aws_iam_policy_document" "payloads_bucket" {
  count = local.payload_create ? 1 : 0

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.payloads[0].arn, "${aws_s3_bucket.payloads[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "payloads" {
  count = local.payload_create ? 1 : 0

  bucket = aws_s3_bucket.payloads[0].id
  policy = data.aws_iam_policy_document.payloads_bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.payloads]
}

# What a producer's role needs to offload: PutObject on the prefix only (attach the
# output payload_producer_policy_json to it).
data "aws_iam_policy_document" "payload_producer" {
  count = local.payloads ? 1 : 0

  lifecycle {
    precondition {
      condition     = local.payload_expiration_days > local.payload_min_days
      error_message = "payload_bucket.expiration_days must be more than the queue's retention + the DLQ's retention + max_delay_days (in days): the lifecycle rule would remove payloads that messages still point at."
    }
  }

  statement {
    sid       = "OffloadPayloads"
    actions   = ["s3:PutObject"]
    resources = ["${local.payload_bucket_arn}/${local.payload_prefix}/*"]
  }

  dynamic "statement" {
    for_each = local.payload_kms_key_arn == null ? [] : [local.payload_kms_key_arn]

    content {
      sid       = "PayloadKey"
      actions   = ["kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}
