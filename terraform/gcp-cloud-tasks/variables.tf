variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "location" {
  description = "Region of the queue (and of the target Cloud Run service / function), e.g. europe-west1."
  type        = string
}

variable "name" {
  description = "Queue name: 1-100 letters, digits or hyphens, starting with a letter (the dead-letter topic \"<name>-dead-letters\" and the invoker account are named after it)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,99}$", var.name))
    error_message = "name: 1-100 letters, digits or hyphens, starting with a letter (Cloud Tasks' queue ids; the dead-letter topic named after it must start with a letter)."
  }
}

variable "target_url" {
  description = "HTTPS URL of the function that runs the jobs (the library's Cloud Tasks HTTP shim)."
  type        = string

  validation {
    condition     = can(regex("^https://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]+))?(?P<path>/[^?#]*)?(?:[?](?P<query>[^#]*))?$", var.target_url))
    error_message = "target_url must be an https:// URL (tasks carry an OIDC token) without user info or a fragment: https://HOST[:PORT][/PATH][?QUERY]."
  }
}

variable "target_service" {
  description = "Name of the Cloud Run service behind target_url (a 2nd-gen Cloud Function's service has the function's name). The invoker may invoke this service only. Pass the service's or function's attribute (google_cloudfunctions2_function.x.name), not a string, so Terraform grants the role only once the service exists."
  type        = string
}

variable "audience" {
  description = "Audience of the tasks' OIDC tokens, checked by the shim. Default: target_url."
  type        = string
  default     = null
}

variable "max_attempts" {
  description = "Tries per task, the first included. Set it to the jobs' cq.Retry(attempts=N) (the largest, when jobs differ): on a job's last attempt the shim writes the dead letter. -1 (unlimited) also works; a smaller number makes Cloud Tasks drop tasks silently."
  type        = number
  default     = 3

  validation {
    condition     = (var.max_attempts >= 1 || var.max_attempts == -1) && floor(var.max_attempts) == var.max_attempts
    error_message = "max_attempts must be a whole number >= 1, or -1 for unlimited."
  }
}

variable "min_backoff_seconds" {
  description = "Wait before the first retry; the jobs' Backoff initial."
  type        = number
  default     = 1
}

variable "max_backoff_seconds" {
  description = "Longest wait between retries; the jobs' Backoff maximum."
  type        = number
  default     = 300

  validation {
    condition     = var.max_backoff_seconds >= var.min_backoff_seconds
    error_message = "max_backoff_seconds must be >= min_backoff_seconds."
  }
}

variable "max_doublings" {
  description = "Times the wait doubles before growing linearly (Cloud Tasks' form of exponential backoff). 0 for a fixed backoff."
  type        = number
  default     = 16
}

variable "max_retry_duration_seconds" {
  description = "Keep retrying at least this long (0: max_attempts alone decides). Cloud Tasks stops only once both max_attempts and this are reached, so with max_attempts >= 1 it never cuts the shim's last attempt short. With max_attempts = -1 it would be the only limit and could end a task before the attempt that writes its dead letter: refused."
  type        = number
  default     = 0
  nullable    = false

  validation {
    condition     = var.max_retry_duration_seconds >= 0
    error_message = "max_retry_duration_seconds must be >= 0."
  }

  validation {
    condition     = var.max_retry_duration_seconds == 0 || var.max_attempts >= 1
    error_message = "max_retry_duration_seconds with max_attempts = -1 is the only limit on retries and can drop a task before the shim's last attempt writes its dead letter: set max_attempts to the jobs' attempts (cloudqueue terraform-vars), or max_retry_duration_seconds = 0."
  }
}

variable "max_dispatches_per_second" {
  description = "Rate limit: tasks dispatched per second."
  type        = number
  default     = 100
}

variable "max_concurrent_dispatches" {
  description = "Rate limit: tasks running at once."
  type        = number
  default     = 100
}

variable "logging_sampling_ratio" {
  description = "Fraction of task operations logged to Cloud Logging (0-1)."
  type        = number
  default     = 1.0

  validation {
    condition     = var.logging_sampling_ratio >= 0 && var.logging_sampling_ratio <= 1
    error_message = "logging_sampling_ratio must be between 0 and 1."
  }
}

variable "invoker_account_id" {
  description = "Account id of the invoker service account the tasks' OIDC tokens are minted for (6-30 lowercase letters, digits or hyphens, starting with a letter). Default: \"<name>-invoker\" in lowercase, cut to 30 characters."
  type        = string
  default     = null

  validation {
    condition     = var.invoker_account_id == null || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", coalesce(var.invoker_account_id, "unset")))
    error_message = "invoker_account_id must be 6-30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (IAM's service account ids)."
  }
}

variable "enqueuers" {
  description = "IAM members that enqueue jobs (e.g. \"serviceAccount:web@PROJECT.iam.gserviceaccount.com\"). Each gets cloudtasks.enqueuer on the queue and may act as the invoker. Add the function's own account when jobs enqueue jobs or delays hop."
  type        = list(string)
  default     = []
}

variable "function_service_account" {
  description = "Email of the service account the function runs as; it may publish to the dead-letter topic. null: grant nothing."
  type        = string
  default     = null
}

variable "dead_letter_topic_name" {
  description = "Pub/Sub topic the shim writes dead letters to (and its keeping subscription). Default: \"<name>-dead-letters\"."
  type        = string
  default     = null

  validation {
    condition     = var.dead_letter_topic_name == null || (can(regex("^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$", coalesce(var.dead_letter_topic_name, "unset"))) && !startswith(lower(coalesce(var.dead_letter_topic_name, "unset")), "goog"))
    error_message = "dead_letter_topic_name must be a Pub/Sub name: 3-255 letters, digits or ._~+%-, starting with a letter, not with \"goog\"."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter subscription keeps a dead letter (max 7 days)."
  type        = number
  default     = 604800
}

variable "kms_key_name" {
  description = "Customer-managed key for the dead-letter topic (null: Google-managed). The Pub/Sub service agent needs encrypt/decrypt on it; the gcp-pubsub module's pattern applies."
  type        = string
  default     = null
}

variable "payload_bucket" {
  description = <<-EOT
    The claim check's Cloud Storage bucket (null: none). Payloads above offload_above go
    there (cq.App(..., payload_store = output payload_store_url)); function_service_account
    gets roles/storage.objectUser and the enqueuers roles/storage.objectCreator, both
    on the prefix only (IAM conditions).
      location        - the bucket's location, e.g. "EUROPE-WEST1" (required)
      create          - make the bucket (private, uniform access, with the lifecycle rule);
                        false: use an existing bucket (grants only) and add the rule yourself
      name            - bucket name (default "<project>-<name>-payloads")
      prefix          - object name prefix (default: name)
      expiration_days - the lifecycle rule's age (default: 31 days (the longest a task lives) + the dead-letter subscription's retention + max_delay_days, + 1); it must outlive every
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
  description = "Cron schedules, as `cloudqueue terraform-vars` writes them from @app.job(schedule=cq.Cron(...)): name => { expression (unix cron), timezone (IANA), body (the envelope), queue (a key of var.queues; null: the module's own) }. Each becomes a Cloud Scheduler job that creates a task on this queue."
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
  description = "The Cloud Scheduler region (null: the queue's location)."
  type        = string
  default     = null
}

variable "schedules_target" {
  description = "Where a Cloud Scheduler firing goes: \"queue\" (a task created on the job's queue; the function sees no slot time, so every firing is a new job without a per-slot key) or \"function\" (POSTed to target_url with the invoker's OIDC token: the function reads the slot from X-CloudScheduler-ScheduleTime, so the slot's idempotency key is cron:<job>:<schedule>:<slot UTC> and an app with a store runs a retried firing once; Cloud Scheduler retries the firing, schedule_retry_count times)."
  type        = string
  default     = "queue"
  nullable    = false

  validation {
    condition     = contains(["queue", "function"], var.schedules_target)
    error_message = "schedules_target must be \"queue\" or \"function\"."
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
  description = "More queues for an app with several (cq.App(queues={...})), besides this module's own queue, which is the app's \"default\" one. Each entry makes a Cloud Tasks queue \"<name>-<key>\" with the same target, token and invoker, its own retry config and rate limits (unset settings take the module's), and its own dead-letter topic \"<name>-<key>-dead-letters\" with the subscription that keeps them. Priority between push queues is their dispatch rates: give a critical queue more max_dispatches_per_second and max_concurrent_dispatches, a bulk queue fewer. `cloudqueue terraform-vars` prints the map."
  type = map(object({
    max_attempts              = optional(number)
    min_backoff_seconds       = optional(number)
    max_backoff_seconds       = optional(number)
    max_doublings             = optional(number)
    max_dispatches_per_second = optional(number)
    max_concurrent_dispatches = optional(number)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for key in keys(var.queues) : can(regex("^[A-Za-z][A-Za-z0-9-]*$", key)) && key != "default" && length("${var.name}-${key}") <= 100])
    error_message = "queues: each key is a queue name of letters, digits or hyphens, starting with a letter (\"default\" is the module's own queue), and \"<name>-<key>\" fits Cloud Tasks' 100 characters."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.max_attempts == null || ((coalesce(q.max_attempts, 1) >= 1 || coalesce(q.max_attempts, 1) == -1) && floor(coalesce(q.max_attempts, 1)) == coalesce(q.max_attempts, 1))])
    error_message = "queues: max_attempts must be a whole number >= 1, or -1 for unlimited."
  }
}
