variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod."
  type        = string
}

variable "alarm_topic_arn" {
  description = "SNS topic every alarm notifies."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of recloop's EMF metrics."
  type        = string
  default     = "recloop"
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the serving ALB (dimension LoadBalancer)."
  type        = string
}

variable "promote_dlq_name" {
  description = "SQS dead-letter queue of failed promotions."
  type        = string
}

variable "extra_alarm_arns" {
  description = "Alarms defined in other modules shown on the dashboard (no-weblogs, deployment guards)."
  type        = list(string)
  default     = []
}

variable "error_rate_threshold_percent" {
  description = "5xx share of requests (percent) that pages on-call."
  type        = number
  default     = 1
}

variable "p99_latency_threshold_seconds" {
  description = "p99 target response time (seconds) that pages on-call."
  type        = number
  default     = 0.25
}

variable "latency_evaluation_periods" {
  description = "Consecutive 1-minute periods over the p99 threshold before the alarm fires."
  type        = number
  default     = 5
}

variable "ctr_period_seconds" {
  description = "Period of the engagement monitor's AlarmState series in seconds (at least its schedule)."
  type        = number
  default     = 900
}

variable "ctr_evaluation_periods" {
  description = "Consecutive periods the monitor reports engagement_drop firing before on-call is paged."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "weblog_function_name" {
  description = "The Kinesis weblog processor Lambda (errors, iterator age); null: <name>-weblog-processor."
  type        = string
  default     = null
}

variable "monitor_function_name" {
  description = "The engagement monitor Lambda; null: <name>-monitor."
  type        = string
  default     = null
}

variable "promote_function_name" {
  description = "The promote Lambda; null: <name>-promote."
  type        = string
  default     = null
}

variable "serving_log_group_name" {
  description = "The serving tasks' log group (the champion-rejected metric filter); null: /ecs/<name>/serving."
  type        = string
  default     = null
}

variable "iterator_age_threshold_seconds" {
  description = "How far (seconds) the weblog processor may fall behind the stream for 15 minutes before on-call is paged."
  type        = number
  default     = 600
}
