# The optional idempotency store (cq.App(..., store="dynamodb://TABLE?region=...")):
# one DynamoDB table, on-demand, records deleted by TTL on expires_at, and the
# function's role allowed the four item calls the store makes on this table only.

locals {
  store_table_name = coalesce(var.store_table_name, "${var.name}-store")
  store_url        = var.store_table ? "dynamodb://${local.store_table_name}?region=${data.aws_region.current.name}" : null
}

resource "aws_dynamodb_table" "store" {
  count = var.store_table ? 1 : 0

  name         = local.store_table_name
  billing_mode = "PAY_PER_REQUEST"
  # cloudqueue_aws.dynamodb: the partition key is the string "id" (app/key/... or app/id/...)
  hash_key = "id"

  attribute {
    name = "id"
    type = "S"
  }

  # documents (flows' state) carry "parent", their key up to its second "/" (app/flow):
  # listing an app's flows is a Query of this sparse index, not a Scan of the table
  attribute {
    name = "parent"
    type = "S"
  }

  global_secondary_index {
    name            = "by_parent"
    hash_key        = "parent"
    range_key       = "id"
    projection_type = "KEYS_ONLY"
  }

  # Completed keys keep duplicates from running for the job's cq.Once(ttl=...) (24 h by
  # default); DynamoDB then deletes them. The library treats a lapsed record as absent,
  # so the deletion delay of TTL never lets a duplicate through nor holds one back.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = var.store_point_in_time_recovery
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.store_kms_key_arn
  }

  deletion_protection_enabled = var.store_deletion_protection
  tags                        = var.tags
}

data "aws_iam_policy_document" "store" {
  count = var.store_table ? 1 : 0

  statement {
    sid = "IdempotencyStore"
    # claim (UpdateItem, PutItem when a lapsed record starts over), extend / complete /
    # release (UpdateItem), release after dead letters (DeleteItem), read (GetItem);
    # flows: a child's end (PutItem), the set of finished children (UpdateItem), the
    # children's ends read together (BatchGetItem).
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
    ]
    resources = [aws_dynamodb_table.store[0].arn]
  }

  dynamic "statement" {
    for_each = var.store_kms_key_arn == null ? [] : [var.store_kms_key_arn]

    content {
      sid = "IdempotencyStoreKey"
      # DynamoDB encrypts and decrypts items with the table's key on the caller's behalf.
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "store" {
  count = var.store_table ? 1 : 0

  name   = "cloudqueue-${var.name}-store"
  role   = var.create_role ? aws_iam_role.consumer[0].id : local.role_name
  policy = data.aws_iam_policy_document.store[0].json
}
