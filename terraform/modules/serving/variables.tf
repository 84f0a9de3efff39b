variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod."
  type        = string
}

variable "environment" {
  description = "RECLOOP_ENVIRONMENT of the service: dev, staging or prod."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the ALB and the Cognito user pool from deletion (true outside dev)."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Shared KMS key: ECR, logs and secrets."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the service."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks, the internal ALB and the API Gateway VPC link."
  type        = list(string)
}

variable "image_tag" {
  description = "Tag of the serving image in this module's ECR repository (the git sha CI pushed)."
  type        = string
}

variable "task_cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 1024
}

variable "task_memory_mb" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 2048
}

variable "web_concurrency" {
  description = "uvicorn workers per task (WEB_CONCURRENCY); about one per vCPU."
  type        = number
  default     = 2
}

variable "desired_count" {
  description = "Tasks at deploy time; autoscaling moves it between min_count and max_count."
  type        = number
  default     = 2
}

variable "min_count" {
  description = "Minimum tasks kept by autoscaling."
  type        = number
  default     = 2
}

variable "max_count" {
  description = "Maximum tasks autoscaling may run."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation autoscaling keeps the service at."
  type        = number
  default     = 60
}

variable "deployment_config_name" {
  description = "CodeDeploy ECS traffic-shifting config: CodeDeployDefault.ECSAllAtOnce, ...ECSLinear10PercentEvery1Minutes, ...ECSCanary10Percent5Minutes."
  type        = string
  default     = "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"

  validation {
    condition = contains([
      "CodeDeployDefault.ECSAllAtOnce",
      "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
      "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
      "CodeDeployDefault.ECSCanary10Percent5Minutes",
      "CodeDeployDefault.ECSCanary10Percent15Minutes",
    ], var.deployment_config_name)
    error_message = "deployment_config_name must be one of CodeDeploy's predefined ECS configs (deploy-serving.sh's wait depends on its shift time)."
  }
}

variable "blue_termination_wait_minutes" {
  description = "Minutes the old (blue) task set keeps running after the shift: the window for an instant rollback."
  type        = number
  default     = 30
}

variable "rollback_5xx_threshold" {
  description = "Target 5xx responses per minute that stop a deployment and roll it back."
  type        = number
  default     = 10
}

variable "rollback_p99_seconds" {
  description = "p99 target response time (seconds) that stops a deployment and rolls it back."
  type        = number
  default     = 0.5
}

variable "throttling_rate_limit" {
  description = "API Gateway stage steady-state request rate limit (requests per second)."
  type        = number
}

variable "throttling_burst_limit" {
  description = "API Gateway stage burst limit (requests)."
  type        = number
}

variable "jwt_audiences" {
  description = "Extra audiences (app client ids) the JWT authorizer accepts beside the Cognito client made here."
  type        = list(string)
  default     = []
}

variable "cors_allowed_origins" {
  description = "Origins of the web frontend allowed by CORS."
  type        = list(string)
  default     = []
}

variable "waf_rate_limit_per_5min" {
  description = "Requests one IP may make in 5 minutes before WAF blocks it."
  type        = number
  default     = 2000
}

variable "cloudfront_certificate_arn" {
  description = "ACM certificate (us-east-1) for a custom domain on CloudFront; null uses the cloudfront.net certificate."
  type        = string
  default     = null
}

variable "cloudfront_aliases" {
  description = "Custom domain names of the distribution (need cloudfront_certificate_arn)."
  type        = list(string)
  default     = []
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket (the service reads the registry prefix)."
  type        = string
}

variable "lake_kms_key_arn" {
  description = "ARN of the KMS key of the lake bucket."
  type        = string
}

variable "registry_prefix" {
  description = "Key prefix of the registry artifacts the watcher downloads."
  type        = string
}

variable "registry_artifacts_uri" {
  description = "RECLOOP_REGISTRY_ARTIFACTS_URI: s3:// prefix of the model bundles."
  type        = string
}

variable "model_package_group_arn" {
  description = "SageMaker model package group the watcher polls for a new champion."
  type        = string
}

variable "model_package_group_name" {
  description = "Name of the model package group (RECLOOP_REGISTRY_URI = sagemaker://<name>)."
  type        = string
}

variable "events_stream_name" {
  description = "Kinesis stream of the EventSink (impressions and tracker events)."
  type        = string
}

variable "events_producer_policy_arn" {
  description = "IAM policy that allows putting records on the events stream."
  type        = string
}

variable "features_secret_arn" {
  description = "Secret with RECLOOP_FEATURES_URI (DocumentDB)."
  type        = string
}

variable "features_security_group_id" {
  description = "Security group of DocumentDB, which must admit the tasks."
  type        = string
}

variable "candidates_secret_arn" {
  description = "Secret with RECLOOP_CANDIDATES_URI (Elasticsearch, with credentials)."
  type        = string
}

variable "visitor_key_secret_arn" {
  description = "Secret with RECLOOP_VISITOR_KEY (the tracker endpoint hashes anonymous visitors)."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the EMF metrics."
  type        = string
  default     = "recloop"
}

variable "log_retention_days" {
  description = "Retention of the service, API and WAF log groups in days."
  type        = number
  default     = 365
}

variable "alarm_topic_arn" {
  description = "SNS topic the deployment alarms notify."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "waf_max_body_bytes" {
  description = "Largest request body the WAF lets through on paths other than events_path (the common rule set's own limit, 8 KB)."
  type        = number
  default     = 8192
}

variable "events_path" {
  description = "Path of the tracker's event batches (POST, up to 500 events): exempt from waf_max_body_bytes."
  type        = string
  default     = "/events"
}
