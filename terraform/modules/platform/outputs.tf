output "kms_key_arn" {
  description = "ARN of the shared customer-managed KMS key."
  value       = aws_kms_key.this.arn
}

output "alarm_topic_arn" {
  description = "ARN of the on-call SNS topic every alarm notifies."
  value       = aws_sns_topic.alarms.arn
}
