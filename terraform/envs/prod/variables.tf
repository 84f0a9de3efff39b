variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "eu-west-1"
}

variable "alarm_email" {
  description = "E-mail address that receives every alarm (confirm the subscription from the inbox)."
  type        = string
}

variable "image_tag" {
  description = "Git sha CI built: serving image <sha>, Lambda images <function>-<sha>, training image cpu-<sha>."
  type        = string
}

variable "training_image_variant" {
  description = "Training image the monitor launches: cpu or gpu (gpu needs an ml.g* training_instance_type)."
  type        = string
  default     = "cpu"

  validation {
    condition     = contains(["cpu", "gpu"], var.training_image_variant)
    error_message = "training_image_variant must be cpu or gpu."
  }
}

variable "training_instance_type" {
  description = "SageMaker instance type of training jobs."
  type        = string
  default     = "ml.m5.2xlarge"
}

variable "elastic_privatelink_service_name" {
  description = "Elastic Cloud's PrivateLink service name for var.region (Elastic docs, 'AWS PrivateLink traffic filters')."
  type        = string
}

variable "cors_allowed_origins" {
  description = "Origins of the web frontend allowed by CORS."
  type        = list(string)
  default     = []
}

variable "lambda_concurrency_quota" {
  description = "The account's Lambda 'Concurrent executions' quota (Service Quotas). 10 for a new account; raise it, then set this to reserve concurrency for the Lambdas."
  type        = number
  default     = 10
}
