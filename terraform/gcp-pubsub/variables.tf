variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "name" {
  description = "Topic name. The push subscription is \"<name>-push\", the dead-letter topic and its subscription \"<name>-dead-letters\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,241}$", var.name)) && !startswith(lower(var.name), "goog")
    error_message = "name must be a Pub/Sub name that still fits with \"-dead-letters\" appended: 3-242 letters, digits or ._~+%-, starting with a letter, not with \"goog\"."
  }
}

variable "push_endpoint" {
  description = "HTTPS URL of the function that runs the jobs (the library's Pub/Sub push shim)."
  type        = string

  validation {
    condition     = startswith(var.push_endpoint, "https://")
    error_message = "push_endpoint must be an https:// URL: pushes carry an OIDC token."
  }
}

variable "audience" {
  description = "Audience of the pushes' OIDC tokens, checked by the shim. Default: push_endpoint."
  type        = string
  default     = null
}

variable "push_service_account_id" {
  description = "Account id of the service account the pushes' OIDC tokens are minted for (6-30 lowercase letters, digits or hyphens, starting with a letter). Default: \"<name>-push\" in lowercase, other characters as hyphens, cut to 30 characters."
  type        = string
  default     = null

  validation {
    condition     = var.push_service_account_id == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", coalesce(var.push_service_account_id, "unset")))
    error_message = "push_service_account_id must be 6-30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (IAM's service account ids)."
  }
}

variable "target_service" {
  description = "Name of the Cloud Run service behind push_endpoint; the push account gets run.invoker on it alone. null: grant nothing (e.g. a public endpoint that checks the token itself). Pass the service's or function's attribute (google_cloudfunctions2_function.x.name), not a string, so Terraform grants the role only once the service exists."
  type        = string
  default     = null
}

variable "location" {
  description = "Region of target_service (needed with target_service)."
  type        = string
  default     = null
}

variable "max_delivery_attempts" {
  description = "Deliveries before Pub/Sub forwards a message to the dead-letter topic (5-100). Keep headroom over the jobs' largest cq.Retry(attempts=N): deliveries that never start a job count too, and the library dead-letters a job after its own attempts, with the reason. The rule is attempts + max(attempts, 5), at most 100 (cloudqueue.retry.max_receives_for); the default 8 is that of the default 3 attempts. `cloudqueue terraform-vars` prints it."
  type        = number
  default     = 8
  nullable    = false

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100 (Pub/Sub's range)."
  }
}

variable "minimum_backoff_seconds" {
  description = "Retry policy: shortest wait before redelivery (0-600); the jobs' Backoff initial."
  type        = number
  default     = 10

  validation {
    condition     = var.minimum_backoff_seconds >= 0 && var.minimum_backoff_seconds <= 600
    error_message = "minimum_backoff_seconds must be 0-600."
  }
}

variable "maximum_backoff_seconds" {
  description = "Retry policy: longest wait before redelivery (0-600); the jobs' Backoff maximum, capped at 600."
  type        = number
  default     = 600

  validation {
    condition     = var.maximum_backoff_seconds >= 0 && var.maximum_backoff_seconds <= 600
    error_message = "maximum_backoff_seconds must be 0-600."
  }

  validation {
    condition     = var.maximum_backoff_seconds >= var.minimum_backoff_seconds
    error_message = "maximum_backoff_seconds must be >= minimum_backoff_seconds."
  }
}

variable "ack_deadline_seconds" {
  description = "How long a push may take before Pub/Sub redelivers (10-600); keep it above the function's timeout."
  type        = number
  default     = 600

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be 10-600."
  }
}

variable "message_retention_seconds" {
  description = "How long the push subscription keeps an undelivered message (600-604800)."
  type        = number
  default     = 604800
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter subscription keeps a dead letter (600-604800); at least message_retention_seconds."
  type        = number
  default     = 604800

  validation {
    condition     = var.dead_letter_retention_seconds >= var.message_retention_seconds
    error_message = "dead_letter_retention_seconds must be at least message_retention_seconds: dead letters must outlive the messages they come from."
  }
}

variable "enable_message_ordering" {
  description = "Deliver messages with the same ordering key in order (jobs with an ordering_key)."
  type        = bool
  default     = false
}

variable "kms_key_name" {
  description = "Customer-managed Cloud KMS key for both topics (projects/P/locations/L/keyRings/R/cryptoKeys/K). null: Google-managed encryption."
  type        = string
  default     = null
}

variable "publishers" {
  description = "IAM members that enqueue jobs (publish to the topic)."
  type        = list(string)
  default     = []
}

variable "function_service_account" {
  description = "Email of the service account the function runs as; it publishes poison messages and cq.Permanent failures to the dead-letter topic. null: grant nothing."
  type        = string
  default     = null
}

variable "payload_bucket" {
  description = <<-EOT
    The claim check's Cloud Storage bucket (null: none). Payloads above offload_above go
    there (cq.App(..., payload_store = output payload_store_url)); function_service_account
    gets roles/storage.objectUser and the publishers roles/storage.objectCreator, both
    on the prefix only (IAM conditions).
      location        - the bucket's location, e.g. "EUROPE-WEST1" (required)
      create          - make the bucket (private, uniform access, with the lifecycle rule);
                        false: use an existing bucket (grants only) and add the rule yourself
      name            - bucket name (default "<project>-<name>-payloads")
      prefix          - object name prefix (default: name)
      expiration_days - the lifecycle rule's age (default: the subscription's retention + the dead-letter subscription's + max_delay_days, + 1); it must outlive every
                        message that can still point at an object
      max_delay_days  - the longest delay= / at= the producers use, in days (default 0)
      log_bucket      - where Cloud Storage writes usage logs (default: none)
  EOT
  type = object({
    location        = string
    create          = optional(bool, true)
    name            = optional(string)
    prefix          = optional(string)
    expiration_days = optional(number)
    max_delay_days  = optional(number, 0)
    log_bucket      = optional(string)
  })
  default = null

  validation {
    condition     = var.payload_bucket == null || try(var.payload_bucket.prefix, null) == null || length(trim(coalesce(try(var.payload_bucket.prefix, null), "x"), "/")) > 0
    error_message = "payload_bucket.prefix must not be empty: the lifecycle rule and the grants are scoped to it."
  }
}

variable "labels" {
  description = "Labels for the resources that take them."
  type        = map(string)
  default     = {}
}

variable "schedules" {
  description = "Cron schedules, as `cloudqueue terraform-vars` writes them from @app.job(schedule=cq.Cron(...)): name => { expression (unix cron), timezone (IANA), body (the envelope), queue (a key of var.queues; null: the module's own) }. Each becomes a Cloud Scheduler job that publishes to the topic."
  type = map(object({
    expression = string
    timezone   = string
    body       = string
    queue      = optional(string)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for s in var.schedules : s.queue == null || contains(keys(var.queues), coalesce(s.queue, "-"))])
    error_message = "schedules: a schedule's queue must be a key of var.queues (or null: the module's own)."
  }
}

variable "schedules_enabled" {
  description = "Whether the cron schedules fire (false pauses the Cloud Scheduler jobs)."
  type        = bool
  default     = true
}

variable "scheduler_region" {
  description = "The Cloud Scheduler region of the cron schedules (null: location)."
  type        = string
  default     = null
}

variable "schedules_target" {
  description = "Where a Cloud Scheduler firing goes: \"topic\" (a message published to the job's topic; the function sees no slot time, so every firing is a new job without a per-slot key) or \"function\" (POSTed to push_endpoint with the push account's OIDC token: the function reads the slot from X-CloudScheduler-ScheduleTime, so the slot's idempotency key is cron:<job>:<schedule>:<slot UTC> and an app with a store runs a retried firing once; Cloud Scheduler retries the firing, schedule_retry_count times)."
  type        = string
  default     = "topic"
  nullable    = false

  validation {
    condition     = contains(["topic", "function"], var.schedules_target)
    error_message = "schedules_target must be \"topic\" or \"function\"."
  }
}

variable "schedule_retry_count" {
  description = "Retries of a Cloud Scheduler firing that failed (0-5)."
  type        = number
  default     = 3
  nullable    = false

  validation {
    condition     = var.schedule_retry_count >= 0 && var.schedule_retry_count <= 5
    error_message = "schedule_retry_count must be 0-5 (Cloud Scheduler's range)."
  }
}

variable "schedule_attempt_deadline_seconds" {
  description = "With schedules_target = \"function\": how long Cloud Scheduler waits for the function's answer (15-1800); set it to the function's timeout."
  type        = number
  default     = 540
  nullable    = false

  validation {
    condition     = var.schedule_attempt_deadline_seconds >= 15 && var.schedule_attempt_deadline_seconds <= 1800
    error_message = "schedule_attempt_deadline_seconds must be 15-1800 (Cloud Scheduler's HTTP deadline)."
  }
}

variable "store_collection" {
  description = "The idempotency store's Firestore collection (cq.App(..., store=\"firestore://PROJECT/COLLECTION\")): gets a TTL policy on expires_at, and function_service_account may use its database. Null: no store."
  type        = string
  default     = null

  validation {
    condition     = var.store_collection == null || can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+)*$", var.store_collection))
    error_message = "store_collection: a collection id, or a path to a subcollection (coll/doc/coll)."
  }
}

variable "store_database" {
  description = "The Firestore database of the store's collection."
  type        = string
  default     = "(default)"
  nullable    = false
}

variable "queues" {
  description = "More queues for an app with several (cq.App(queues={...})), besides this module's own topic, which is the app's \"default\" queue. Each entry makes a topic \"<name>-<key>\" with its push subscription \"<name>-<key>-push\" to the same endpoint and token, its own retry and dead-letter policy (unset settings take the module's) and its own dead-letter topic and subscription \"<name>-<key>-dead-letters\". The push shim tells the queues apart by the subscription. `cloudqueue terraform-vars` prints the map."
  type = map(object({
    max_delivery_attempts   = optional(number)
    minimum_backoff_seconds = optional(number)
    maximum_backoff_seconds = optional(number)
    ack_deadline_seconds    = optional(number)
    enable_message_ordering = optional(bool)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for key in keys(var.queues) : can(regex("^[A-Za-z][A-Za-z0-9_-]*$", key)) && key != "default" && length("${var.name}-${key}-dead-letters") <= 255])
    error_message = "queues: each key is a queue name of letters, digits, '-' or '_', starting with a letter (\"default\" is the module's own queue)."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.max_delivery_attempts == null || (coalesce(q.max_delivery_attempts, 5) >= 5 && coalesce(q.max_delivery_attempts, 5) <= 100)])
    error_message = "queues: max_delivery_attempts must be 5-100 (Pub/Sub's range)."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.maximum_backoff_seconds == null || coalesce(q.maximum_backoff_seconds, 0) <= 600])
    error_message = "queues: maximum_backoff_seconds must be at most 600 (Pub/Sub's limit)."
  }
}
