variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod."
  type        = string
}

variable "environment" {
  description = "RECLOOP_ENVIRONMENT of the Lambda: dev, staging or prod (prod refuses placeholder secrets)."
  type        = string
}

variable "kms_key_arn" {
  description = "Shared KMS key: stream, logs and Lambda environment encryption."
  type        = string
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket; also the Kinesis on-failure destination."
  type        = string
}

variable "lake_kms_key_arn" {
  description = "ARN of the KMS key of the lake bucket."
  type        = string
}

variable "lake_uri" {
  description = "RECLOOP_LAKE_URI (s3://bucket/prefix) the processor writes to."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket (IAM is scoped to it)."
  type        = string
}

variable "lambda_image_uri" {
  description = "Image of the weblog_processor Lambda (docker/lambda.Dockerfile built with FUNCTION=weblog_processor), e.g. <repo>:weblog_processor-<git sha>."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the Lambda runs in (it reaches DocumentDB and S3 from there)."
  type        = list(string)
}

variable "vpc_id" {
  description = "VPC of the Lambda's security group."
  type        = string
}

variable "features_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_FEATURES_URI (DocumentDB connection string) for the real-time history update."
  type        = string
}

variable "features_security_group_id" {
  description = "Security group of DocumentDB, which must admit the Lambda."
  type        = string
}

variable "visitor_key_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_VISITOR_KEY, the key of the anonymous visitor hash."
  type        = string
}

variable "alarm_topic_arn" {
  description = "SNS topic the no-weblogs alarm notifies."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the EMF metrics (POWERTOOLS_METRICS_NAMESPACE)."
  type        = string
  default     = "recloop"
}

variable "batch_size" {
  description = "Kinesis records per Lambda invocation."
  type        = number
  default     = 500
}

variable "batching_window_seconds" {
  description = "Maximum seconds the event source mapping waits to fill a batch."
  type        = number
  default     = 5
}

variable "parallelization_factor" {
  description = "Concurrent batches per shard (ordering is kept per partition key)."
  type        = number
  default     = 2
}

variable "maximum_retry_attempts" {
  description = "Retries of a failing batch before its records go to the on-failure destination (bounded)."
  type        = number
  default     = 3

  validation {
    condition     = var.maximum_retry_attempts >= 0 && var.maximum_retry_attempts <= 10
    error_message = "maximum_retry_attempts must be bounded: 0..10 (-1, infinite, would block the shard)."
  }
}

variable "maximum_record_age_seconds" {
  description = "Records older than this are sent to the on-failure destination instead of retried (bounded)."
  type        = number
  default     = 3600

  validation {
    condition     = var.maximum_record_age_seconds >= 60 && var.maximum_record_age_seconds <= 604800
    error_message = "maximum_record_age_seconds must be bounded: 60..604800 (-1, infinite, is refused)."
  }
}

variable "stream_retention_hours" {
  description = "Hours Kinesis keeps records (room to replay after an outage)."
  type        = number
  default     = 48
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions of the processor (caps its load on S3 and DocumentDB); null reserves none, which a new account's quota (10) requires."
  type        = number
  default     = null
}

variable "memory_mb" {
  description = "Memory of the processor Lambda in MB (CPU scales with it)."
  type        = number
  default     = 1024
}

variable "timeout_seconds" {
  description = "Timeout of the processor Lambda in seconds."
  type        = number
  default     = 120
}

variable "no_weblogs_period_seconds" {
  description = "Period of the no-weblogs alarm in seconds."
  type        = number
  default     = 300
}

variable "no_weblogs_evaluation_periods" {
  description = "Consecutive periods with EventsWritten < 1 before the no-weblogs alarm fires."
  type        = number
  default     = 3
}

variable "log_retention_days" {
  description = "Retention of the Lambda's log group in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
