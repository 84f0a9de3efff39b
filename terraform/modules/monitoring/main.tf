# On-call's view: the CloudWatch dashboard (requests, p50/p99 latency, errors, events ingested,
# ingest lag, CTR per model version) and the service alarms (5xx rate, p99 latency, CTR drop,
# failed promotions; Lambda errors, iterator age, the monitor and rejected champions in
# pipeline_alarms.tf). The no-weblogs alarm lives with the ingest path it watches and the
# deployment guards with the blue/green deployment; both appear on the dashboard here.

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.region
  alb    = ["LoadBalancer", var.alb_arn_suffix]
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  alarm_name          = "${var.name}-serving-5xx-rate"
  alarm_description   = "More than ${var.error_rate_threshold_percent}% of API responses are 5xx. Runbook: docs/deploy.md#serving-5xx-rate"
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_threshold_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]

  metric_query {
    id          = "rate"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    label       = "5xx rate (%)"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      stat        = "Sum"
      period      = 60
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      stat        = "Sum"
      period      = 60
    }
  }

  tags = var.tags
}

resource "aws_cloudwatch_metric_alarm" "p99_latency" {
  alarm_name          = "${var.name}-serving-p99-latency"
  alarm_description   = "p99 latency above ${var.p99_latency_threshold_seconds}s. Runbook: docs/deploy.md#serving-p99-latency"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = var.latency_evaluation_periods
  threshold           = var.p99_latency_threshold_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

# The engagement monitor (recloop.monitoring, run by the monitor Lambda) decides whether CTR
# dropped with its statistical test and minimum volumes, and publishes the verdict as
# AlarmState{detector=engagement_drop} (1 firing, 0 OK, nothing when data is too thin). This
# alarm pages on-call on that verdict; the monitor itself starts the retrain.
resource "aws_cloudwatch_metric_alarm" "ctr_drop" {
  alarm_name          = "${var.name}-ctr-drop"
  alarm_description   = "The engagement monitor found a significant CTR drop. Runbook: docs/deploy.md#ctr-drop"
  namespace           = var.metrics_namespace
  metric_name         = "AlarmState"
  dimensions          = { service = "monitor", detector = "engagement_drop" }
  statistic           = "Maximum"
  period              = var.ctr_period_seconds
  evaluation_periods  = var.ctr_evaluation_periods
  datapoints_to_alarm = var.ctr_evaluation_periods
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "promote_dlq" {
  alarm_name          = "${var.name}-promote-failed"
  alarm_description   = "A finished training job could not be promoted (message in the promote DLQ). Runbook: docs/deploy.md#promote-failed"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.promote_dlq_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 8, height = 6
        properties = {
          title   = "Requests"
          region  = local.region
          stat    = "Sum"
          period  = 60
          metrics = [concat(["AWS/ApplicationELB", "RequestCount"], local.alb)]
        }
      },
      {
        type = "metric", x = 8, y = 0, width = 8, height = 6
        properties = {
          title  = "Latency p50 / p99 (s)"
          region = local.region
          period = 60
          metrics = [
            concat(["AWS/ApplicationELB", "TargetResponseTime"], local.alb, [{ stat = "p50", label = "p50" }]),
            concat(["AWS/ApplicationELB", "TargetResponseTime"], local.alb, [{ stat = "p99", label = "p99" }]),
          ]
          annotations = { horizontal = [{ label = "p99 alarm", value = var.p99_latency_threshold_seconds }] }
        }
      },
      {
        type = "metric", x = 16, y = 0, width = 8, height = 6
        properties = {
          title  = "Errors"
          region = local.region
          stat   = "Sum"
          period = 60
          metrics = [
            concat(["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"], local.alb, [{ label = "5xx" }]),
            concat(["AWS/ApplicationELB", "HTTPCode_Target_4XX_Count"], local.alb, [{ label = "4xx" }]),
            concat(["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"], local.alb, [{ label = "ALB 5xx" }]),
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title  = "Events ingested"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [var.metrics_namespace, "EventsWritten", "service", "weblog_processor", { label = "written" }],
            [var.metrics_namespace, "EventsFiltered", "service", "weblog_processor", { label = "filtered" }],
            [var.metrics_namespace, "EventsQuarantined", "service", "weblog_processor", { label = "quarantined" }],
            [var.metrics_namespace, "EventsFailed", "service", "weblog_processor", { label = "failed (redelivered)" }],
            [var.metrics_namespace, "HistoryErrors", "service", "weblog_processor", { label = "history not updated" }],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title  = "Ingest lag (s)"
          region = local.region
          period = 300
          metrics = [
            [var.metrics_namespace, "IngestLagSeconds", "service", "weblog_processor", { stat = "p50", label = "p50" }],
            [var.metrics_namespace, "IngestLagSeconds", "service", "weblog_processor", { stat = "Maximum", label = "max" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title  = "CTR per model version"
          region = local.region
          period = var.ctr_period_seconds
          stat   = "Average"
          metrics = [
            [{ expression = "SEARCH('{${var.metrics_namespace},model_version,service} MetricName=\"CTR\" service=\"monitor\"', 'Average', ${var.ctr_period_seconds})", id = "ctr", label = "" }],
          ]
        }
      },
      {
        type = "alarm", x = 0, y = 12, width = 24, height = 4
        properties = {
          title = "Alarms"
          alarms = concat([
            aws_cloudwatch_metric_alarm.error_rate.arn,
            aws_cloudwatch_metric_alarm.p99_latency.arn,
            aws_cloudwatch_metric_alarm.ctr_drop.arn,
            aws_cloudwatch_metric_alarm.promote_dlq.arn,
            aws_cloudwatch_metric_alarm.iterator_age.arn,
            aws_cloudwatch_metric_alarm.monitor_failing.arn,
            aws_cloudwatch_metric_alarm.champion_rejected.arn,
          ], [for alarm in aws_cloudwatch_metric_alarm.lambda_errors : alarm.arn], var.extra_alarm_arns)
        }
      },
    ]
  })
}
