# Alarms on the parts of the loop that fail without a 5xx: the Lambdas (errors), the weblog
# stream falling behind (iterator age), the engagement monitor not running or failing, and a
# serving worker refusing to load the registry's champion. Each links its runbook section.
#
# Names default to the ones the ingest, training and serving modules give their resources
# ("<name>-weblog-processor", "<name>-monitor", "<name>-promote", "/ecs/<name>/serving");
# an environment that names them otherwise passes them in.

locals {
  weblog_function  = coalesce(var.weblog_function_name, "${var.name}-weblog-processor")
  monitor_function = coalesce(var.monitor_function_name, "${var.name}-monitor")
  promote_function = coalesce(var.promote_function_name, "${var.name}-promote")
  serving_logs     = coalesce(var.serving_log_group_name, "/ecs/${var.name}/serving")

  # Functions whose errors page on-call here (the monitor has its own alarm below). A failed
  # weblog batch is retried by the event source mapping: only errors in 2 of 3 periods page.
  lambda_error_alarms = {
    weblog_processor = { function = local.weblog_function, datapoints = 2, periods = 3 }
    promote          = { function = local.promote_function, datapoints = 1, periods = 1 }
  }
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = local.lambda_error_alarms
  alarm_name          = "${each.value.function}-errors"
  alarm_description   = "Lambda ${each.value.function} reports errors. Runbook: docs/deploy.md#lambda-errors"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value.function }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.datapoints
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

# IteratorAge is the age of the newest record of the last batch the function read: growing
# means the processor falls behind the stream, and records expire after the stream's retention.
resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  alarm_name          = "${var.name}-weblogs-iterator-age"
  alarm_description   = "The weblog processor is more than ${var.iterator_age_threshold_seconds}s behind the Kinesis stream. Runbook: docs/deploy.md#kinesis-iterator-age"
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = local.weblog_function }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.iterator_age_threshold_seconds * 1000 # the metric is in ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

# The monitor is the loop's eyes: an error, or no run at all, for two schedule periods in a row
# means nobody watches CTR (the ctr-drop alarm stays silent because its metric stops).
resource "aws_cloudwatch_metric_alarm" "monitor_failing" {
  alarm_name          = "${var.name}-monitor-failing"
  alarm_description   = "The engagement monitor Lambda failed or did not run. Runbook: docs/deploy.md#monitor-failing"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "breaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]

  metric_query {
    id          = "failing"
    expression  = "IF(FILL(errors, 0) > 0 OR FILL(invocations, 0) < 1, 1, 0)"
    label       = "monitor failed or did not run"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = local.monitor_function }
      stat        = "Sum"
      period      = var.ctr_period_seconds
    }
  }

  metric_query {
    id = "invocations"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Invocations"
      dimensions  = { FunctionName = local.monitor_function }
      stat        = "Sum"
      period      = var.ctr_period_seconds
    }
  }

  tags = var.tags
}

# A serving worker that rejects the champion (checksum, shapes or smoke query failed, or an
# unsafe artifact) keeps the previous model and writes one JSON log line with the event name
# recloop.model_rejected (recloop.serving.runtime.REJECTED_EVENT); this filter counts them.
# Transient download errors are retried and never write it.
resource "aws_cloudwatch_log_metric_filter" "champion_rejected" {
  name           = "${var.name}-champion-rejected"
  log_group_name = local.serving_logs
  pattern        = "\"recloop.model_rejected\""

  metric_transformation {
    name          = "ChampionRejected"
    namespace     = var.metrics_namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "champion_rejected" {
  alarm_name          = "${var.name}-champion-rejected"
  alarm_description   = "A serving worker refused to load the registry's champion. Runbook: docs/deploy.md#champion-rejected"
  namespace           = var.metrics_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.champion_rejected.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}
