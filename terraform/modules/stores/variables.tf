variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod."
  type        = string
}

variable "kms_key_arn" {
  description = "Shared KMS key: DocumentDB storage, its logs and the secrets."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the stores."
  type        = string
}

variable "vpc_cidr_block" {
  description = "CIDR of the VPC (admitted to the Elastic PrivateLink endpoint)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of DocumentDB and the Elastic PrivateLink endpoint."
  type        = list(string)
}

variable "documentdb_instance_class" {
  description = "DocumentDB instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "documentdb_instance_count" {
  description = "DocumentDB instances (1 writer + replicas); 2 or more for a failover target."
  type        = number
  default     = 2
}

variable "documentdb_engine_version" {
  description = "DocumentDB engine version."
  type        = string
  default     = "5.0.0"
}

variable "documentdb_backup_retention_days" {
  description = "Days of automated DocumentDB backups (point-in-time restore window)."
  type        = number
  default     = 7

  validation {
    condition     = var.documentdb_backup_retention_days >= 1 && var.documentdb_backup_retention_days <= 35
    error_message = "Backups cannot be switched off: 1..35 days."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the DocumentDB cluster (true outside dev)."
  type        = bool
  default     = true
}

variable "elastic_region" {
  description = "Elastic Cloud region of the deployment (same AWS region as the VPC, e.g. us-east-1)."
  type        = string
}

variable "elastic_version_regex" {
  description = "Elastic Stack versions to pick the latest from; recloop's elasticsearch client speaks 8.x and 9.x."
  type        = string
  default     = "^9\\.[0-9]+\\.[0-9]+$"
}

variable "elastic_deployment_template_id" {
  description = "Elastic Cloud deployment template (hardware profile)."
  type        = string
  default     = "aws-storage-optimized"
}

variable "elastic_hot_size" {
  description = "Memory per zone of the Elasticsearch hot tier, e.g. 4g."
  type        = string
  default     = "4g"
}

variable "elastic_zone_count" {
  description = "Availability zones of the Elasticsearch hot tier."
  type        = number
  default     = 2
}

variable "elastic_privatelink_service_name" {
  description = "Elastic Cloud's PrivateLink service name for the region (Elastic docs: 'AWS PrivateLink traffic filters', e.g. com.amazonaws.vpce.us-east-1.vpce-svc-0e42e1e06ed010238)."
  type        = string
}

variable "elastic_privatelink_domain" {
  description = "Private DNS domain of Elastic's PrivateLink endpoint in the region, e.g. vpce.us-east-1.aws.elastic-cloud.com."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the DocumentDB audit and profiler logs in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
