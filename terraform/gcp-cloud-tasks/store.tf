# The optional idempotency store (cq.App(..., store="firestore://PROJECT/COLLECTION")):
# a TTL policy on the collection's expires_at, so Firestore deletes lapsed records, and
# the function's service account allowed to read and write documents of the store's
# database only (Firestore's IAM stops at the database; the store touches one collection).

locals {
  store_collection_id = var.store_collection == null ? null : element(split("/", var.store_collection), length(split("/", var.store_collection)) - 1)
  store_url = var.store_collection == null ? null : join("", [
    "firestore://${var.project}/${var.store_collection}",
    var.store_database == "(default)" ? "" : "?database=${var.store_database}",
  ])
}

resource "google_firestore_field" "store_ttl" {
  count = var.store_collection == null ? 0 : 1

  project    = var.project
  database   = var.store_database
  collection = local.store_collection_id
  field      = "expires_at"

  # Completed keys keep duplicates from running for the job's cq.Once(ttl=...) (24 h by
  # default); Firestore then deletes them. The library treats a lapsed record as absent.
  ttl_config {}

  # The store reads documents by id and never queries: no index on expires_at.
  index_config {}
}

resource "google_project_iam_member" "function_uses_store" {
  count = var.store_collection != null && var.function_service_account != null ? 1 : 0

  project = var.project
  role    = "roles/datastore.user"
  member  = "serviceAccount:${var.function_service_account}"

  condition {
    title       = "cloudqueue store ${var.name}"
    description = "Documents of the idempotency store's Firestore database only."
    expression  = "resource.name.startsWith(\"projects/${var.project}/databases/${var.store_database}\")"
  }
}
