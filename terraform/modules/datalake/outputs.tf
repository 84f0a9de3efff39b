output "bucket_name" {
  description = "Name of the lake bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the lake bucket."
  value       = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the lake and the registry artifacts."
  value       = aws_kms_key.this.arn
}

output "lake_prefix" {
  description = "Key prefix of the lake inside the bucket."
  value       = var.lake_prefix
}

output "registry_prefix" {
  description = "Key prefix of the model registry artifacts inside the bucket."
  value       = var.registry_prefix
}

output "lake_uri" {
  description = "RECLOOP_LAKE_URI for every component."
  value       = "s3://${aws_s3_bucket.this.id}/${var.lake_prefix}"
}

output "registry_uri" {
  description = "S3 URI of the model registry artifacts."
  value       = "s3://${aws_s3_bucket.this.id}/${var.registry_prefix}"
}

output "glue_database_name" {
  description = "Glue database holding the events table (query it with Athena)."
  value       = aws_glue_catalog_database.this.name
}

output "events_view_sql" {
  description = "CREATE OR REPLACE VIEW events (Athena): run once to create the view recloop's readers agree with."
  value       = local.events_view_sql
}

output "compaction_function_name" {
  description = "Name of the scheduled compaction Lambda."
  value       = aws_lambda_function.compact.function_name
}
