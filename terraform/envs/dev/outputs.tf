output "lake_uri" {
  description = "RECLOOP_LAKE_URI of this environment."
  value       = module.datalake.lake_uri
}

output "stream_name" {
  description = "Kinesis stream Logstash ships weblogs to."
  value       = module.ingest.stream_name
}

output "serving_repository_url" {
  description = "ECR repository of the serving image."
  value       = module.serving.repository_url
}

output "training_repository_url" {
  description = "ECR repository of the training image."
  value       = module.training.repository_url
}

output "lambda_repository_url" {
  description = "ECR repository of the Lambda images."
  value       = module.ingest.lambda_repository_url
}

output "api_url" {
  description = "Public URL of the recommendation API (CloudFront)."
  value       = module.serving.cloudfront_url
}

output "api_gateway_endpoint" {
  description = "API Gateway's own URL: it answers 403 to anything not sent through CloudFront."
  value       = module.serving.api_endpoint
}

output "token_url" {
  description = "OAuth2 token endpoint for API clients (client credentials)."
  value       = module.serving.cognito_token_url
}

output "cognito_user_pool_id" {
  description = "Cognito user pool of the API's machine clients."
  value       = module.serving.cognito_user_pool_id
}

output "cognito_client_id" {
  description = "Client id of the API's machine client."
  value       = module.serving.cognito_client_id
}

output "ecs_cluster_name" {
  description = "ECS cluster of the serving service."
  value       = module.serving.cluster_name
}

output "ecs_service_name" {
  description = "ECS service of the recommendation API."
  value       = module.serving.service_name
}

output "task_definition_arn" {
  description = "Task definition revision to roll out with a blue/green deployment."
  value       = module.serving.task_definition_arn
}

output "container_name" {
  description = "Container name of the serving task (AppSpec)."
  value       = module.serving.container_name
}

output "container_port" {
  description = "Container port of the serving task (AppSpec)."
  value       = module.serving.container_port
}

output "codedeploy_app_name" {
  description = "CodeDeploy application of the serving blue/green deployments."
  value       = module.serving.codedeploy_app_name
}

output "deployment_wait_minutes" {
  description = "Minutes deploy-serving.sh waits for a blue/green deployment to succeed."
  value       = module.serving.deployment_wait_minutes
}

output "codedeploy_deployment_group_name" {
  description = "CodeDeploy deployment group of the serving blue/green deployments."
  value       = module.serving.codedeploy_deployment_group_name
}

output "training_role_arn" {
  description = "SageMaker execution role of training jobs."
  value       = module.training.sagemaker_role_arn
}

output "model_package_group_name" {
  description = "SageMaker model package group (the production registry)."
  value       = module.training.model_package_group_name
}

output "monitor_function_name" {
  description = "Monitor Lambda (invoke it to start the loop by hand)."
  value       = module.training.monitor_function_name
}

output "dashboard_url" {
  description = "CloudWatch dashboard of this environment."
  value       = module.monitoring.dashboard_url
}
