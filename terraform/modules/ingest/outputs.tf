output "stream_name" {
  description = "Name of the weblogs Kinesis stream (Logstash's kinesis output stream_name)."
  value       = aws_kinesis_stream.this.name
}

output "stream_arn" {
  description = "ARN of the weblogs Kinesis stream."
  value       = aws_kinesis_stream.this.arn
}

output "producer_policy_arn" {
  description = "IAM policy that lets a producer (Logstash, the serving EventSink) put records on the stream."
  value       = aws_iam_policy.producer.arn
}

output "function_name" {
  description = "Name of the weblog_processor Lambda."
  value       = aws_lambda_function.this.function_name
}

output "lambda_repository_url" {
  description = "ECR repository URL of the Lambda images."
  value       = aws_ecr_repository.lambda.repository_url
}

output "lambda_repository_arn" {
  description = "ECR repository ARN of the Lambda images."
  value       = aws_ecr_repository.lambda.arn
}

output "no_weblogs_alarm_name" {
  description = "Name of the no-weblogs alarm."
  value       = aws_cloudwatch_metric_alarm.no_weblogs.alarm_name
}

output "no_weblogs_alarm_arn" {
  description = "ARN of the no-weblogs alarm."
  value       = aws_cloudwatch_metric_alarm.no_weblogs.arn
}
