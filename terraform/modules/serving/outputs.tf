output "repository_url" {
  description = "ECR repository URL of the serving image."
  value       = aws_ecr_repository.this.repository_url
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.this.name
}

output "task_definition_arn" {
  description = "Task definition revision with the image of var.image_tag: the revision a blue/green deployment rolls out."
  value       = aws_ecs_task_definition.this.arn
}

output "container_name" {
  description = "Container name in the task definition (the AppSpec's LoadBalancerInfo needs it)."
  value       = local.container_name
}

output "container_port" {
  description = "Container port of the API."
  value       = local.container_port
}

output "codedeploy_app_name" {
  description = "CodeDeploy application of the blue/green deployments."
  value       = aws_codedeploy_app.this.name
}

output "codedeploy_deployment_group_name" {
  description = "CodeDeploy deployment group of the blue/green deployments."
  value       = aws_codedeploy_deployment_group.this.deployment_group_name
}

output "alb_arn_suffix" {
  description = "ARN suffix of the internal ALB (CloudWatch dimension LoadBalancer)."
  value       = aws_lb.this.arn_suffix
}

output "api_endpoint" {
  description = "API Gateway endpoint (prefer the CloudFront URL)."
  value       = aws_apigatewayv2_api.this.api_endpoint
}

output "api_id" {
  description = "API Gateway HTTP API id (CloudWatch dimension ApiId)."
  value       = aws_apigatewayv2_api.this.id
}

output "cloudfront_url" {
  description = "Public URL of the API (CloudFront)."
  value       = "https://${aws_cloudfront_distribution.this.domain_name}"
}

output "cognito_token_url" {
  description = "OAuth2 token endpoint (client credentials) for API callers."
  value       = "https://${aws_cognito_user_pool_domain.this.domain}.auth.${local.region}.amazoncognito.com/oauth2/token"
}

output "cognito_user_pool_id" {
  description = "Cognito user pool that issues the API's JWTs."
  value       = aws_cognito_user_pool.this.id
}

output "cognito_client_id" {
  description = "Client id of the machine-to-machine API client."
  value       = aws_cognito_user_pool_client.this.id
}

output "deploy_alarm_names" {
  description = "Alarms that stop and roll back a blue/green deployment."
  value       = [aws_cloudwatch_metric_alarm.deploy_5xx.alarm_name, aws_cloudwatch_metric_alarm.deploy_latency.alarm_name]
}

output "deployment_wait_minutes" {
  description = "Minutes a blue/green deployment may take until Succeeded (green start, traffic shift, blue termination wait)."
  value       = local.deployment_wait_minutes
}
