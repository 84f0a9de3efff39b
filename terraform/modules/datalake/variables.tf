variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod; the bucket is <name>-lake-<account id>."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket (RECLOOP_LAKE_URI = s3://<bucket>/<lake_prefix>)."
  type        = string
  default     = "lake"
}

variable "registry_prefix" {
  description = "Key prefix of the model registry artifacts inside the bucket."
  type        = string
  default     = "registry"
}

variable "infrequent_access_after_days" {
  description = "Days after which objects move to STANDARD_IA (cheaper, still instant)."
  type        = number
  default     = 30
}

variable "glacier_after_days" {
  description = "Days after which objects move to GLACIER_IR (cheapest with instant retrieval)."
  type        = number
  default     = 180
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed."
  type        = number
  default     = 90
}

variable "event_projection_start" {
  description = "First day (YYYY-MM-DD) Athena partition projection considers for the events table."
  type        = string
  default     = "2024-01-01"
}

variable "log_retention_days" {
  description = "Days the S3 server access logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Allow terraform destroy to delete a non-empty bucket (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "compaction_grace_days" {
  description = "Days a compaction-replaced object (tagged recloop-lake=retired) stays readable before lifecycle expiry; longer than any reader's run."
  type        = number
  default     = 3
}

variable "failed_batch_retention_days" {
  description = "Days the stream's failed batches (aws/lambda/..., raw records) are kept."
  type        = number
  default     = 14
}

variable "quarantine_retention_days" {
  description = "Days quarantined records (rejected input with its raw payload) are kept."
  type        = number
  default     = 30
}

variable "compaction_image_uri" {
  description = "Lambda image of lambdas/compact (the docker/lambda.Dockerfile build with FUNCTION=compact)."
  type        = string
}

variable "compaction_schedule" {
  description = "EventBridge schedule of the compaction run (after the hour's settle time)."
  type        = string
  default     = "cron(20 * * * ? *)"
}

variable "compaction_memory_mb" {
  description = "Memory of the compaction Lambda: a unit (an hour, or a rolled-up day) is merged in memory."
  type        = number
  default     = 4096
}

variable "compaction_rollup_after_hours" {
  description = "Days that ended this many hours ago are rolled up into one unit; 0 compacts hours only."
  type        = number
  default     = 48
}

variable "kms_key_arn" {
  description = "Platform KMS key for the compaction Lambda's logs and environment."
  type        = string
}

variable "alarm_topic_arn" {
  description = "SNS topic for the compaction alarms."
  type        = string
}

variable "log_retention_in_days" {
  description = "Days the compaction Lambda's logs are kept."
  type        = number
  default     = 365
}

variable "reserve_concurrency" {
  description = "Reserve one concurrent execution for the compaction Lambda. A new account's Lambda concurrency quota (10) admits no reservation (docs/deploy.md, quotas)."
  type        = bool
  default     = false
}
