# The scheduled compaction of the lake (lambdas/compact, recloop.lake.compaction): every hour,
# the closed hours' small objects become a few large ones and old days roll up.
#
# Why a Lambda: a unit is an hour of a few thousand small objects, seconds to a minute of work;
# Glue or a SageMaker Processing job would spend minutes starting capacity for that and bill for
# it. Runs are idempotent, crash-safe and safe to overlap (the commit is a conditional write),
# so a timed-out or failed run is simply finished by the next tick.

locals {
  compact_name = "${var.name}-compact"
}

resource "aws_cloudwatch_log_group" "compact" {
  name              = "/aws/lambda/${local.compact_name}"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "compact_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "compact" {
  name               = local.compact_name
  assume_role_policy = data.aws_iam_policy_document.compact_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "compact" {
  statement {
    sid       = "ReadAndWriteTheLake"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/${var.lake_prefix}/*"]
  }

  # Compaction never deletes: it tags what it replaced, and lifecycle expires it.
  statement {
    sid       = "RetireReplacedObjects"
    actions   = ["s3:PutObjectTagging"]
    resources = ["${aws_s3_bucket.this.arn}/${var.lake_prefix}/*"]
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }

  statement {
    sid       = "EnvironmentKey"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.compact.arn}:*"]
  }

  statement {
    sid       = "XRayTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # why: X-Ray trace APIs do not support resource-level permissions
  }
}

resource "aws_iam_role_policy" "compact" {
  name   = "compact-the-lake"
  role   = aws_iam_role.compact.id
  policy = data.aws_iam_policy_document.compact.json
}

resource "aws_lambda_function" "compact" {
  #checkov:skip=CKV_AWS_116:a failed run is repeated by the next schedule tick, which redoes exactly what is left; a dead-letter queue would hold nothing to act on
  #checkov:skip=CKV_AWS_117:the job only calls S3 (and CloudWatch, X-Ray); a VPC would add NAT cost and no isolation
  #checkov:skip=CKV_AWS_272:code signing applies to zip packages; this function is a container image from an immutable, scanned ECR repository
  function_name = local.compact_name
  description   = "Compact the lake's closed hours, roll up old days (recloop lake compact)"
  role          = aws_iam_role.compact.arn
  package_type  = "Image"
  image_uri     = var.compaction_image_uri
  memory_size   = var.compaction_memory_mb
  timeout       = 900
  # Overlapping runs are safe but wasteful: one at a time, once the account's concurrency quota
  # allows reserving (a new account's 10 does not: the apply would fail).
  reserved_concurrent_executions = var.reserve_concurrency ? 1 : null
  kms_key_arn                    = var.kms_key_arn

  image_config {
    command = ["handler.handler"]
  }

  environment {
    variables = {
      RECLOOP_LAKE_URI                   = local.lake_location
      RECLOOP_COMPACT_ROLLUP_AFTER_HOURS = tostring(var.compaction_rollup_after_hours)
      POWERTOOLS_SERVICE_NAME            = "compact"
      POWERTOOLS_LOG_LEVEL               = "INFO"
    }
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.compact.name
  }

  tags = merge(var.tags, { "recloop:source" = "lambdas/compact" })

  depends_on = [aws_iam_role_policy.compact]
}

resource "aws_cloudwatch_event_rule" "compact" {
  name                = "${local.compact_name}-schedule"
  description         = "Compact the lake's closed hours"
  schedule_expression = var.compaction_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "compact" {
  rule = aws_cloudwatch_event_rule.compact.name
  arn  = aws_lambda_function.compact.arn

  retry_policy {
    maximum_retry_attempts       = 2
    maximum_event_age_in_seconds = 1800
  }
}

resource "aws_lambda_permission" "compact" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.compact.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.compact.arn
}

# Runs failing for three hours in a row: hours pile up uncompacted (readers stay correct, only
# slower) and replaced objects stop expiring. Runbook: docs/deploy.md#lake-compaction-failing.
resource "aws_cloudwatch_metric_alarm" "compact_errors" {
  alarm_name          = "${local.compact_name}-failing"
  alarm_description   = "The lake compaction Lambda failed 3 hours in a row. Runbook: docs/deploy.md#lake-compaction-failing"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.compact.function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}
