output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "dashboard_url" {
  description = "Console URL of the dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.this.dashboard_name}"
}

output "alarm_names" {
  description = "Names of the service alarms defined here."
  value = concat([
    aws_cloudwatch_metric_alarm.error_rate.alarm_name,
    aws_cloudwatch_metric_alarm.p99_latency.alarm_name,
    aws_cloudwatch_metric_alarm.ctr_drop.alarm_name,
    aws_cloudwatch_metric_alarm.promote_dlq.alarm_name,
    aws_cloudwatch_metric_alarm.iterator_age.alarm_name,
    aws_cloudwatch_metric_alarm.monitor_failing.alarm_name,
    aws_cloudwatch_metric_alarm.champion_rejected.alarm_name,
  ], [for alarm in aws_cloudwatch_metric_alarm.lambda_errors : alarm.alarm_name])
}
