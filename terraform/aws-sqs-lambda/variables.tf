variable "name" {
  description = "Queue name. With fifo = true the module appends \".fifo\". The dead-letter queue is named \"<name>-dlq\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,70}$", var.name))
    error_message = "name: 1-70 letters, digits, '-' or '_' (room is left for the \"-dlq\" and \".fifo\" suffixes)."
  }
}

variable "fifo" {
  description = "FIFO queue (and FIFO dead-letter queue). Needed when any job has an ordering_key; the library sends MessageGroupId and MessageDeduplicationId."
  type        = bool
  default     = false
}

variable "content_based_deduplication" {
  description = "FIFO only: deduplicate on the body's hash when a message carries no deduplication id. The library always sends one, so this rarely matters."
  type        = bool
  default     = false
}

variable "max_receive_count" {
  description = "Receives before SQS itself moves a message to the dead-letter queue. Keep headroom over the jobs' largest cq.Retry(attempts=N): receives that never start a job count too (FIFO hold-backs, records given back near the function's deadline, batches lost to a timeout), and the library dead-letters a job after its own attempts, with the reason. The rule is attempts + max(attempts, 5) (cloudqueue.retry.max_receives_for); the default 8 is that of the default 3 attempts. `cloudqueue terraform-vars` prints it."
  type        = number
  default     = 8
  nullable    = false

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number from 1 to 1000 (SQS's range)."
  }
}

variable "redrive_allow_policy" {
  description = "Give the DLQ a redrive allow policy that admits only this queue as a source. Turn off only on an SQS emulator that lacks RedriveAllowPolicy (moto)."
  type        = bool
  default     = true
}

variable "function_name" {
  description = "Name (or ARN) of the Lambda function that consumes the queue. Pass the function resource's attribute (aws_lambda_function.x.function_name), not a string, so Terraform creates the function before the event source mapping."
  type        = string

  validation {
    condition     = can(regex("^([A-Za-z0-9_-]{1,64}|arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]{1,128})?)$", var.function_name))
    error_message = "function_name must be a Lambda function name (1-64 letters, digits, '-' or '_') or its ARN."
  }
}

variable "function_timeout_seconds" {
  description = "The consuming function's timeout; the visibility timeout must be at least six times this, plus the batching window."
  type        = number
  default     = 30

  validation {
    condition     = var.function_timeout_seconds >= 1 && var.function_timeout_seconds <= 900
    error_message = "function_timeout_seconds must be 1-900 (Lambda's range)."
  }
}

variable "visibility_timeout_seconds" {
  description = "How long a received message stays hidden. AWS asks for at least 6x the function timeout, so a batch that is retried inside the event source mapping does not come back while still running; the batching window counts too, since records are hidden while it gathers them."
  type        = number
  default     = 180

  validation {
    condition     = var.visibility_timeout_seconds >= 0 && var.visibility_timeout_seconds <= 43200
    error_message = "visibility_timeout_seconds must be 0-43200 (12 hours)."
  }

  validation {
    condition     = var.visibility_timeout_seconds >= 6 * var.function_timeout_seconds + var.maximum_batching_window_in_seconds
    error_message = "visibility_timeout_seconds must be at least 6 x function_timeout_seconds + maximum_batching_window_in_seconds."
  }
}

variable "message_retention_seconds" {
  description = "How long the queue keeps a message (default 4 days)."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600
    error_message = "message_retention_seconds must be 60-1209600 (14 days)."
  }
}

variable "dlq_name" {
  description = "Name of the dead-letter queue (the module appends \".fifo\" for FIFO). Default: \"<name>-dlq\"."
  type        = string
  default     = null

  validation {
    condition     = var.dlq_name == null || can(regex("^[A-Za-z0-9_-]{1,75}$", coalesce(var.dlq_name, "x")))
    error_message = "dlq_name: 1-75 letters, digits, '-' or '_' (SQS allows 80 characters, \".fifo\" included)."
  }
}

variable "dlq_message_retention_seconds" {
  description = "How long the dead-letter queue keeps a message (default and maximum: 14 days). SQS keeps a message's original enqueue time when it moves, so keep this longer than message_retention_seconds."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600
    error_message = "dlq_message_retention_seconds must be 60-1209600 (14 days)."
  }

  validation {
    condition     = var.dlq_message_retention_seconds >= var.message_retention_seconds
    error_message = "dlq_message_retention_seconds must be at least message_retention_seconds: a message keeps its original enqueue time when SQS moves it, so a shorter DLQ retention deletes dead letters early (or at once)."
  }
}

variable "dlq_visibility_timeout_seconds" {
  description = "The dead-letter queue's visibility timeout: how long `cloudqueue dead-letters list` and a redrive hide a dead letter they received. null: SQS's default (30 s)."
  type        = number
  default     = null

  validation {
    condition     = var.dlq_visibility_timeout_seconds == null || (coalesce(var.dlq_visibility_timeout_seconds, 0) >= 0 && coalesce(var.dlq_visibility_timeout_seconds, 0) <= 43200)
    error_message = "dlq_visibility_timeout_seconds must be 0-43200 (12 hours), or null."
  }
}

variable "dlq_receive_wait_time_seconds" {
  description = "Long polling on the dead-letter queue (0-20). null: SQS's default (0)."
  type        = number
  default     = null

  validation {
    condition     = var.dlq_receive_wait_time_seconds == null || (coalesce(var.dlq_receive_wait_time_seconds, 0) >= 0 && coalesce(var.dlq_receive_wait_time_seconds, 0) <= 20)
    error_message = "dlq_receive_wait_time_seconds must be 0-20, or null."
  }
}

variable "dlq_kms_key_arn" {
  description = "Customer-managed KMS key for the dead-letter queue. null: the queue's (kms_key_arn), or SSE-SQS when that is null too. The function's role may use both keys."
  type        = string
  default     = null
}

variable "dlq_tags" {
  description = "Tags for the dead-letter queue, merged over tags."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "queue_policy_statements" {
  description = "More statements for the queue's policy, keyed by Sid, merged after the module's own (which denies every request without TLS): e.g. let an SNS topic or an EventBridge rule send jobs (a service principal with an aws:SourceArn condition), or another account. Each applies to this queue only."
  type = map(object({
    effect  = optional(string, "Allow")
    actions = list(string)
    principals = list(object({
      type        = string
      identifiers = list(string)
    }))
    conditions = optional(list(object({
      test     = string
      variable = string
      values   = list(string)
    })), [])
  }))
  default  = {}
  nullable = false

  validation {
    condition = alltrue([for sid, s in var.queue_policy_statements :
      can(regex("^[A-Za-z0-9]+$", sid)) && sid != "DenyInsecureTransport" && contains(["Allow", "Deny"], s.effect) &&
    length(s.actions) > 0 && alltrue([for a in s.actions : startswith(a, "sqs:")])])
    error_message = "queue_policy_statements: each key is the statement's Sid (letters and digits, not DenyInsecureTransport), effect is Allow or Deny, and actions are sqs:* actions."
  }
}

variable "dlq_queue_policy_statements" {
  description = "More statements for the dead-letter queue's policy, as queue_policy_statements (e.g. an operator role that inspects dead letters from another account)."
  type = map(object({
    effect  = optional(string, "Allow")
    actions = list(string)
    principals = list(object({
      type        = string
      identifiers = list(string)
    }))
    conditions = optional(list(object({
      test     = string
      variable = string
      values   = list(string)
    })), [])
  }))
  default  = {}
  nullable = false

  validation {
    condition = alltrue([for sid, s in var.dlq_queue_policy_statements :
      can(regex("^[A-Za-z0-9]+$", sid)) && sid != "DenyInsecureTransport" && contains(["Allow", "Deny"], s.effect) &&
    length(s.actions) > 0 && alltrue([for a in s.actions : startswith(a, "sqs:")])])
    error_message = "dlq_queue_policy_statements: each key is the statement's Sid (letters and digits, not DenyInsecureTransport), effect is Allow or Deny, and actions are sqs:* actions."
  }
}

variable "receive_wait_time_seconds" {
  description = "Long polling for receivers other than Lambda (e.g. `cloudqueue worker`)."
  type        = number
  default     = 20

  validation {
    condition     = var.receive_wait_time_seconds >= 0 && var.receive_wait_time_seconds <= 20
    error_message = "receive_wait_time_seconds must be 0-20."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for both queues. null: SQS-managed encryption (SSE-SQS). Encryption is never off."
  type        = string
  default     = null
}

variable "kms_data_key_reuse_period_seconds" {
  description = "With a KMS key: how long SQS reuses a data key before calling KMS again."
  type        = number
  default     = 300
}

variable "create_event_source_mapping" {
  description = "Create the Lambda event source mapping. Set false when the function is wired to the queue elsewhere (or to provision the queues for `cloudqueue worker` only)."
  type        = bool
  default     = true
}

variable "batch_size" {
  description = "Records per function invocation (1-10 for FIFO, up to 10000 for standard queues with a batching window)."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000
    error_message = "batch_size must be 1-10000."
  }

  validation {
    condition     = !var.fifo || var.batch_size <= 10
    error_message = "batch_size must be at most 10 for a FIFO queue."
  }
}

variable "maximum_batching_window_in_seconds" {
  description = "How long the event source mapping gathers records before invoking (0-300). Needed (>= 1) for batch_size above 10."
  type        = number
  default     = 0

  validation {
    condition     = var.maximum_batching_window_in_seconds >= 0 && var.maximum_batching_window_in_seconds <= 300
    error_message = "maximum_batching_window_in_seconds must be 0-300."
  }

  validation {
    condition     = var.batch_size <= 10 || var.maximum_batching_window_in_seconds >= 1
    error_message = "batch_size above 10 needs maximum_batching_window_in_seconds >= 1."
  }
}

variable "mapping_enabled" {
  description = "Whether the event source mapping polls the queue. false pauses consumption; messages wait in the queue (and keep their retention clock)."
  type        = bool
  default     = true
  nullable    = false
}

variable "filter_criteria" {
  description = "Event filter patterns (JSON strings) for the event source mapping. Careful: Lambda DELETES an SQS message that matches no pattern, without running it and without a dead letter; filter only what no job needs."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = length(var.filter_criteria) <= 10 && alltrue([for f in var.filter_criteria : can(jsondecode(f))])
    error_message = "filter_criteria: at most 10 patterns, each a JSON object (e.g. jsonencode({ body = { type = [\"send_receipt\"] } }))."
  }
}

variable "metrics_config" {
  description = "Event source mapping metrics to publish to CloudWatch (\"EventCount\"; they are billed). []: none."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for m in var.metrics_config : m == "EventCount"])
    error_message = "metrics_config: the only metric is \"EventCount\"."
  }
}

variable "maximum_concurrency" {
  description = "Most concurrent function instances the event source mapping starts (2-1000). null: no limit beyond the function's."
  type        = number
  default     = null

  validation {
    condition     = var.maximum_concurrency == null || (coalesce(var.maximum_concurrency, 2) >= 2 && coalesce(var.maximum_concurrency, 2) <= 1000)
    error_message = "maximum_concurrency must be 2-1000, or null."
  }
}

variable "create_role" {
  description = "Create the function's execution role. false: attach the queue policy to role_name instead (an existing role)."
  type        = bool
  default     = true
}

variable "role_name" {
  description = "Name of the function's execution role (created, or existing when create_role = false). Default: \"<name>-consumer\". IAM allows 64 characters: a long name needs a shorter role_name."
  type        = string
  default     = null

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", coalesce(var.role_name, "${var.name}-consumer")))
    error_message = "The role name (role_name, default \"<name>-consumer\") must be 1-64 letters, digits or +=,.@_- (IAM's limit): give a shorter role_name."
  }
}

variable "allow_send_to_queue" {
  description = "Let the function send to its own queue. A job enqueued with a delay over SQS's 15 minutes hops: the shim sends it back to this queue until it is due, and without this grant the send fails and the job never runs. null (default): true for a standard queue (any job there can be delayed that long), false for FIFO (no per-message delay, nothing hops; set true when jobs enqueue follow-up jobs on it). `cloudqueue terraform-vars` prints it."
  type        = bool
  default     = null
}

variable "payload_bucket" {
  description = <<-EOT
    The claim check's S3 bucket (null: none). Payloads above the queue's size limit go
    there (cq.App(..., payload_store = output payload_store_url)); the function's role may
    read and delete objects under the prefix, producers attach payload_producer_policy_json.
      create            - make the bucket (private, TLS only, encrypted, with the lifecycle
                          rule); false: use an existing bucket and add the rule yourself
      name              - bucket name (default "<name>-payloads")
      prefix            - key prefix (default: name)
      expiration_days   - the lifecycle rule's age (default: the queue's retention + the
                          DLQ's retention + max_delay_days, in days, + 1); it must outlive
                          every message that can still point at an object
      max_delay_days    - the longest delay= / at= the producers use, in days (default 0)
      kms_key_arn       - a customer-managed key for the objects (default: SSE-S3)
      access_log_bucket - where S3 writes the bucket's access logs (default: none)
  EOT
  type = object({
    create            = optional(bool, true)
    name              = optional(string)
    prefix            = optional(string)
    expiration_days   = optional(number)
    max_delay_days    = optional(number, 0)
    kms_key_arn       = optional(string)
    access_log_bucket = optional(string)
  })
  default = null

  validation {
    condition     = var.payload_bucket == null || try(var.payload_bucket.prefix, null) == null || length(trim(coalesce(try(var.payload_bucket.prefix, null), "x"), "/")) > 0
    error_message = "payload_bucket.prefix must not be empty: the lifecycle rule and the grants are scoped to it."
  }

  validation {
    condition     = var.payload_bucket == null || coalesce(try(var.payload_bucket.max_delay_days, 0), 0) >= 0
    error_message = "payload_bucket.max_delay_days must not be negative."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "schedules" {
  description = "Cron schedules, as `cloudqueue terraform-vars` writes them from @app.job(schedule=cq.Cron(...)): name => { expression (EventBridge cron(...)), timezone (IANA), body (the envelope, with <aws.scheduler.scheduled-time> for the slot), message_group_id (FIFO only), queue (a key of var.queues; null: the module's own queue) }."
  type = map(object({
    expression       = string
    timezone         = string
    body             = string
    message_group_id = optional(string)
    queue            = optional(string)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for key, s in var.schedules : can(regex("^cron\\(.+\\)$", s.expression)) && length("${var.name}-${key}") <= 64])
    error_message = "schedules: each expression is an EventBridge cron(...) expression, and \"<name>-<key>\" is at most 64 characters (a schedule's name)."
  }

  validation {
    condition     = alltrue([for s in var.schedules : s.queue == null || contains(keys(var.queues), coalesce(s.queue, "-"))])
    error_message = "schedules: a schedule's queue must be a key of var.queues (or null: the module's own queue)."
  }
}

variable "schedules_enabled" {
  description = "Whether the cron schedules fire (false keeps them, disabled)."
  type        = bool
  default     = true
}

variable "schedule_group_name" {
  description = "The EventBridge Scheduler schedule group of the cron schedules."
  type        = string
  default     = "default"
}

variable "schedule_maximum_event_age_seconds" {
  description = "How long EventBridge Scheduler keeps retrying a firing it could not send (60-86400)."
  type        = number
  default     = 3600

  validation {
    condition     = var.schedule_maximum_event_age_seconds >= 60 && var.schedule_maximum_event_age_seconds <= 86400
    error_message = "schedule_maximum_event_age_seconds must be 60-86400."
  }
}

variable "schedule_maximum_retry_attempts" {
  description = "Retries of a firing EventBridge Scheduler could not send (0-185)."
  type        = number
  default     = 185

  validation {
    condition     = var.schedule_maximum_retry_attempts >= 0 && var.schedule_maximum_retry_attempts <= 185
    error_message = "schedule_maximum_retry_attempts must be 0-185."
  }
}

variable "long_delay_scheduler" {
  description = "Create the scheduler role for long delays (SQSBackend(long_delay=\"scheduler\")) and let the function create one-time schedules in schedule_group_name with it, so jobs it enqueues with long delays need no hops."
  type        = bool
  default     = false
}

variable "store_table" {
  description = "Create the idempotency store's DynamoDB table (cq.App(..., store=...)) and let the function's role use it. Jobs with an idempotency key (or once=True) then run at most once per key."
  type        = bool
  default     = false
  nullable    = false
}

variable "store_table_name" {
  description = "Name of the store's table (default \"<name>-store\")."
  type        = string
  default     = null

  validation {
    condition     = var.store_table_name == null || can(regex("^[A-Za-z0-9_.-]{3,255}$", var.store_table_name))
    error_message = "store_table_name: 3-255 letters, digits, '_', '-' or '.' (DynamoDB's rule)."
  }
}

variable "store_point_in_time_recovery" {
  description = "Point-in-time recovery for the store's table (records are small; recovery keeps completed keys after an accident)."
  type        = bool
  default     = true
  nullable    = false
}

variable "store_kms_key_arn" {
  description = "A customer-managed KMS key for the store's table (default: the AWS-managed key for DynamoDB). The function's role gets the calls DynamoDB makes with it."
  type        = string
  default     = null
}

variable "store_deletion_protection" {
  description = "Deletion protection on the store's table."
  type        = bool
  default     = true
  nullable    = false
}

variable "queues" {
  description = "More queues for an app with several (cq.App(queues={...})), besides this module's own queue, which is the app's \"default\" one. Each entry makes a queue \"<name>-<key>\" (\".fifo\" added for FIFO) with its own dead-letter queue \"<name>-<key>-dlq\", its own event source mapping to the same function and the role's grants. Unset settings take the module's. Give a higher-priority queue more maximum_concurrency, a bulk queue less. `cloudqueue terraform-vars` prints the map."
  type = map(object({
    max_receive_count          = optional(number)
    fifo                       = optional(bool)
    allow_send_to_queue        = optional(bool)
    visibility_timeout_seconds = optional(number)
    message_retention_seconds  = optional(number)
    batch_size                 = optional(number)
    maximum_concurrency        = optional(number)
    mapping_enabled            = optional(bool)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for key in keys(var.queues) : can(regex("^[A-Za-z][A-Za-z0-9_-]*$", key)) && key != "default"])
    error_message = "queues: each key is a queue name of letters, digits, '-' or '_', starting with a letter; \"default\" is the module's own queue."
  }

  validation {
    condition     = alltrue([for key in keys(var.queues) : length("${var.name}-${key}-dlq.fifo") <= 80])
    error_message = "queues: \"<name>-<key>-dlq.fifo\" must fit SQS's 80 characters; use shorter queue names."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.max_receive_count == null || (coalesce(q.max_receive_count, 1) >= 1 && coalesce(q.max_receive_count, 1) <= 1000 && floor(coalesce(q.max_receive_count, 1)) == coalesce(q.max_receive_count, 1))])
    error_message = "queues: max_receive_count must be a whole number from 1 to 1000."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.maximum_concurrency == null || (coalesce(q.maximum_concurrency, 2) >= 2 && coalesce(q.maximum_concurrency, 2) <= 1000)])
    error_message = "queues: maximum_concurrency must be 2-1000, or null."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.visibility_timeout_seconds == null || coalesce(q.visibility_timeout_seconds, 0) >= 6 * var.function_timeout_seconds + var.maximum_batching_window_in_seconds])
    error_message = "queues: visibility_timeout_seconds must be at least 6 x function_timeout_seconds + maximum_batching_window_in_seconds."
  }

  validation {
    condition     = alltrue([for q in values(var.queues) : q.batch_size == null || (coalesce(q.batch_size, 1) >= 1 && coalesce(q.batch_size, 1) <= (coalesce(q.fifo, var.fifo) ? 10 : 10000))])
    error_message = "queues: batch_size must be 1-10000 (at most 10 for a FIFO queue)."
  }
}
