variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod; training jobs are named <name>-<suffix>."
  type        = string
}

variable "environment" {
  description = "RECLOOP_ENVIRONMENT of the loop Lambdas: dev, staging or prod."
  type        = string
}

variable "kms_key_arn" {
  description = "Shared KMS key: ECR, logs and Lambda environment encryption."
  type        = string
}

variable "lake_bucket_arn" {
  description = "ARN of the lake bucket (lake and registry prefixes)."
  type        = string
}

variable "lake_kms_key_arn" {
  description = "ARN of the KMS key of the lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake: training reads it, never writes it."
  type        = string
}

variable "registry_prefix" {
  description = "Key prefix of the model registry artifacts: training writes models there."
  type        = string
}

variable "lake_uri" {
  description = "RECLOOP_LAKE_URI for the loop Lambdas and the training jobs."
  type        = string
}

variable "registry_artifacts_uri" {
  description = "RECLOOP_REGISTRY_ARTIFACTS_URI: s3:// prefix of the model bundles (the registry itself is the model package group)."
  type        = string
}

variable "monitor_image_uri" {
  description = "Image of the monitor Lambda (docker/lambda.Dockerfile built with FUNCTION=monitor)."
  type        = string
}

variable "promote_image_uri" {
  description = "Image of the promote Lambda (docker/lambda.Dockerfile built with FUNCTION=promote)."
  type        = string
}

variable "training_image_tag" {
  description = "Tag of the training image the monitor launches (cpu-<sha> or gpu-<sha>)."
  type        = string
}

variable "training_instance_type" {
  description = "SageMaker instance type of training jobs; an ml.g* type needs a gpu-* image tag."
  type        = string
  default     = "ml.m5.2xlarge"
}

variable "monitor_schedule" {
  description = "EventBridge schedule expression of the engagement monitor."
  type        = string
  default     = "rate(15 minutes)"
}

variable "subnet_ids" {
  description = "Private subnets of the promote Lambda (it publishes to Elasticsearch and DocumentDB)."
  type        = list(string)
}

variable "vpc_id" {
  description = "VPC of the loop Lambdas' security group."
  type        = string
}

variable "features_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_FEATURES_URI (DocumentDB), which the promote Lambda writes content metadata to."
  type        = string
}

variable "features_security_group_id" {
  description = "Security group of DocumentDB, which must admit the promote Lambda."
  type        = string
}

variable "visitor_key_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_VISITOR_KEY (recloop refuses the development placeholder outside dev)."
  type        = string
}

variable "candidates_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_CANDIDATES_URI (Elasticsearch), which the promote Lambda publishes item vectors to."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the EMF metrics."
  type        = string
  default     = "recloop"
}

variable "log_retention_days" {
  description = "Retention of the Lambdas' log groups in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "reserve_concurrency" {
  description = "Reserve one concurrent execution each for the monitor and promote Lambdas. A new account's Lambda concurrency quota (10) admits no reservation: the apply fails until the quota is raised (docs/deploy.md, quotas)."
  type        = bool
  default     = false
}
