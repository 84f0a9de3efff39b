# Weblogs: Logstash -> Kinesis (on-demand) -> the weblog_processor Lambda -> the S3 lake.
# Failures are reported per record (ReportBatchItemFailures); a poison batch is bisected;
# retries and record age are bounded; what still fails lands in S3 for replay.

locals {
  function_name = "${var.name}-weblog-processor"
}

resource "aws_kinesis_stream" "this" {
  name             = "${var.name}-weblogs"
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  stream_mode_details {
    stream_mode = "ON_DEMAND"
  }

  tags = var.tags
}

# ECR repository of the Lambda images (one tag per function and commit).
resource "aws_ecr_repository" "lambda" {
  name                 = "${var.name}-lambda"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "lambda" {
  repository = aws_ecr_repository.lambda.name
  # Only untagged images expire: the functions run one tag each until the next release, and a
  # count rule over tagged images would delete it after enough pushes (the function then fails
  # to start). Old tags are removed by hand (docs/deploy.md).
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "expire untagged images after 14 days"
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = 14
      }
      action = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = local.function_name
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "this" {
  #checkov:skip=CKV_AWS_111:only the VPC network-interface and X-Ray statements use "*": those APIs have no resource-level permissions
  #checkov:skip=CKV_AWS_356:only the VPC network-interface and X-Ray statements use "*": those APIs have no resource-level permissions
  statement {
    sid = "ReadTheStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
      "kinesis:SubscribeToShard",
    ]
    resources = [aws_kinesis_stream.this.arn]
  }

  statement {
    sid       = "WriteTheLake"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*"]
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }

  # Records that exhaust their retries are written by Lambda, with this role, under
  # aws/lambda/<mapping id>/<shard>/... in the lake bucket (outside the lake prefix).
  statement {
    sid       = "OnFailureDestination"
    actions   = ["s3:PutObject"]
    resources = ["${var.lake_bucket_arn}/aws/lambda/*"]
  }

  # Lambda's S3 destination requires ListBucket on the bucket; AWS does not document a prefix
  # it lists under, so no s3:prefix condition (key names only; reads stay scoped above).
  statement {
    sid       = "OnFailureDestinationList"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
  }

  statement {
    sid       = "ReadItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.features_secret_arn, var.visitor_key_secret_arn]
  }

  statement {
    sid       = "UseTheKeys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn, var.lake_kms_key_arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"] # why: these EC2 actions do not support resource-level permissions
  }

  statement {
    sid       = "XRayTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # why: X-Ray trace APIs do not support resource-level permissions
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "weblog-processor"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_security_group" "this" {
  name        = local.function_name
  description = "weblog_processor Lambda: egress to S3, DocumentDB and AWS APIs only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.this.id
  description       = "AWS APIs (S3 through the gateway endpoint, CloudWatch, X-Ray)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "documentdb" {
  security_group_id            = aws_security_group.this.id
  description                  = "DocumentDB: the real-time user history"
  referenced_security_group_id = var.features_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

resource "aws_vpc_security_group_ingress_rule" "documentdb_from_lambda" {
  security_group_id            = var.features_security_group_id
  description                  = "from the weblog_processor Lambda"
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:a stream-sourced function has no async DLQ; failed records go to the event source mapping's S3 on-failure destination
  #checkov:skip=CKV_AWS_272:code signing applies to zip packages; this function is a container image from an immutable, scanned ECR repository
  function_name                  = local.function_name
  description                    = "Kinesis weblogs -> recloop.ingest -> Parquet lake"
  role                           = aws_iam_role.this.arn
  package_type                   = "Image"
  image_uri                      = var.lambda_image_uri
  architectures                  = ["x86_64"]
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  image_config {
    command = ["handler.handler"]
  }

  environment {
    variables = {
      RECLOOP_ENVIRONMENT = var.environment
      RECLOOP_LAKE_URI    = var.lake_uri
      # Secrets by reference: the function reads them with its role at start-up
      # (recloop.config_secrets), so no credential sits in its configuration, plan or state.
      RECLOOP_FEATURES_URI_SECRET_ARN = var.features_secret_arn
      RECLOOP_VISITOR_KEY_SECRET_ARN  = var.visitor_key_secret_arn
      POWERTOOLS_SERVICE_NAME         = "weblog_processor"
      POWERTOOLS_METRICS_NAMESPACE    = var.metrics_namespace
      POWERTOOLS_LOG_LEVEL            = "INFO"
    }
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.this.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tags = merge(var.tags, { "recloop:source" = "lambdas/weblog_processor" })

  depends_on = [aws_iam_role_policy.this]
}

resource "aws_lambda_event_source_mapping" "this" {
  event_source_arn                   = aws_kinesis_stream.this.arn
  function_name                      = aws_lambda_function.this.arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_seconds
  parallelization_factor             = var.parallelization_factor
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true
  maximum_retry_attempts             = var.maximum_retry_attempts
  maximum_record_age_in_seconds      = var.maximum_record_age_seconds

  destination_config {
    on_failure {
      destination_arn = var.lake_bucket_arn
    }
  }
}

# Silence is the failure mode that loses data: no events written for N periods pages on-call.
# Missing data counts as breaching, because a dead processor emits no metric at all.
resource "aws_cloudwatch_metric_alarm" "no_weblogs" {
  alarm_name          = "${var.name}-no-weblogs"
  alarm_description   = "No events written to the lake for ${var.no_weblogs_evaluation_periods} x ${var.no_weblogs_period_seconds}s. Runbook: docs/deploy.md#no-weblogs"
  namespace           = var.metrics_namespace
  metric_name         = "EventsWritten"
  dimensions          = { service = "weblog_processor" }
  statistic           = "Sum"
  period              = var.no_weblogs_period_seconds
  evaluation_periods  = var.no_weblogs_evaluation_periods
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = var.tags
}

# Attach this to Logstash's role: its kinesis output needs exactly these calls.
data "aws_iam_policy_document" "producer" {
  statement {
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DescribeStreamSummary"]
    resources = [aws_kinesis_stream.this.arn]
  }
  statement {
    actions   = ["kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_policy" "producer" {
  name        = "${var.name}-weblogs-producer"
  description = "Put weblogs on the ${aws_kinesis_stream.this.name} stream (Logstash, the serving EventSink)"
  policy      = data.aws_iam_policy_document.producer.json
  tags        = var.tags
}
