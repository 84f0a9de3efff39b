output "documentdb_security_group_id" {
  description = "Security group of DocumentDB; consumers add an ingress rule from their own group."
  value       = aws_security_group.documentdb.id
}

output "documentdb_endpoint" {
  description = "DocumentDB cluster (writer) endpoint."
  value       = aws_docdb_cluster.this.endpoint
}

output "features_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_FEATURES_URI."
  value       = aws_secretsmanager_secret.features.arn
}

output "candidates_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_CANDIDATES_URI (Elasticsearch, with credentials)."
  value       = aws_secretsmanager_secret.candidates.arn
}

output "search_host" {
  description = "Elasticsearch host name over PrivateLink (resolvable inside the VPC only)."
  value       = local.search_host
}

output "visitor_key_secret_arn" {
  description = "Secrets Manager secret holding RECLOOP_VISITOR_KEY."
  value       = aws_secretsmanager_secret.visitor_key.arn
}

output "elastic_deployment_id" {
  description = "Elastic Cloud deployment ID."
  value       = ec_deployment.this.id
}
