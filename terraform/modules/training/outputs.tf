output "repository_url" {
  description = "ECR repository URL of the training image (tags cpu-<sha> and gpu-<sha>)."
  value       = aws_ecr_repository.this.repository_url
}

output "sagemaker_role_arn" {
  description = "SageMaker execution role of training jobs."
  value       = aws_iam_role.sagemaker.arn
}

output "model_package_group_name" {
  description = "SageMaker model package group: the production model registry."
  value       = aws_sagemaker_model_package_group.this.model_package_group_name
}

output "model_package_group_arn" {
  description = "ARN of the model package group."
  value       = aws_sagemaker_model_package_group.this.arn
}

output "monitor_function_arn" {
  description = "ARN of the monitor Lambda."
  value       = aws_lambda_function.monitor.arn
}

output "monitor_function_name" {
  description = "Name of the monitor Lambda."
  value       = aws_lambda_function.monitor.function_name
}

output "promote_function_name" {
  description = "Name of the promote Lambda."
  value       = aws_lambda_function.promote.function_name
}

output "promote_dlq_arn" {
  description = "SQS dead-letter queue of training jobs whose promotion failed after every retry."
  value       = aws_sqs_queue.promote_dlq.arn
}

output "promote_dlq_name" {
  description = "Name of the promote dead-letter queue (alarmed on by the monitoring module)."
  value       = aws_sqs_queue.promote_dlq.name
}
