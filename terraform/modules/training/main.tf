# Training and the retrain loop: the SageMaker execution role, the model package group, the
# training image repository, and the two loop Lambdas wired to EventBridge:
#   schedule -> monitor (engagement drop or stale model -> CreateTrainingJob)
#   SageMaker Training Job State Change -> promote (gate, register, approve, publish)

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.region
  account_id = data.aws_caller_identity.current.account_id
  # Training jobs the loop may start or react to, by name prefix: recloop's launcher names them
  # <base_job_name>-<timestamp> (recloop.training.sagemaker.LaunchConfig.base_job_name). Keep
  # dev and prod in separate accounts: both use the same prefix.
  training_job_prefix      = "recloop-train"
  training_job_arn_pattern = "arn:aws:sagemaker:${local.region}:${local.account_id}:training-job/${local.training_job_prefix}*"
  monitor_name             = "${var.name}-monitor"
  promote_name             = "${var.name}-promote"
}

# --- training image ------------------------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  name                 = "${var.name}-training"
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

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  # Only untagged images expire: a count over tagged ones would expire the image the monitor
  # still launches (prod runs one tag until the next release). Old tags go by hand.
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

# --- model registry ------------------------------------------------------------------------------

resource "aws_sagemaker_model_package_group" "this" {
  model_package_group_name        = "${var.name}-recommenders"
  model_package_group_description = "recloop champions and challengers; approved = served"
  tags                            = var.tags
}

# --- SageMaker execution role: read the lake, write the registry, nothing else ------------------

data "aws_iam_policy_document" "sagemaker_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.name}-sagemaker-training"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "sagemaker" {
  #checkov:skip=CKV_AWS_356:ListModelPackages supports no resource types (AWS Service Authorization Reference) and is granted on "*"; checkov lists a model-package type for it
  # SageMaker copies the train channel with this role: the manifest file (under the registry
  # prefix) and the lake objects it lists, each "<lake prefix>/<key>" (the manifest's prefix
  # ends with "/"), so no lake listing is needed for the channel.
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*"]
  }

  statement {
    sid       = "ReadWriteTheRegistry"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.lake_bucket_arn}/${var.registry_prefix}/*"]
  }

  statement {
    sid       = "ListLakeAndRegistry"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*", "${var.registry_prefix}/*"]
    }
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.lake_kms_key_arn]
  }

  statement {
    sid       = "PullTheTrainingImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "ImageKey"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # why: GetAuthorizationToken is account-wide and has no resource-level permissions
  }

  statement {
    sid = "TrainingLogs"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["arn:aws:logs:${local.region}:${local.account_id}:log-group:/aws/sagemaker/TrainingJobs:*"]
  }

  statement {
    sid       = "TrainingMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # why: PutMetricData has no resource-level permissions; the condition pins the namespaces
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["/aws/sagemaker/TrainingJobs", var.metrics_namespace]
    }
  }

  statement {
    sid = "Experiments"
    actions = [
      "sagemaker:CreateExperiment",
      "sagemaker:CreateTrial",
      "sagemaker:CreateTrialComponent",
      "sagemaker:UpdateTrialComponent",
      "sagemaker:AssociateTrialComponent",
      "sagemaker:BatchPutMetrics",
      "sagemaker:DescribeExperiment",
      "sagemaker:DescribeTrial",
      "sagemaker:DescribeTrialComponent",
      "sagemaker:AddTags",
    ]
    # recloop.training.runs.SageMakerExperiments: the experiment is the model package group;
    # the trial and its trial component are named after the run, whose id is the training
    # job's name (recloop-train-...), not the stack's name.
    resources = [
      "arn:aws:sagemaker:${local.region}:${local.account_id}:experiment/${aws_sagemaker_model_package_group.this.model_package_group_name}",
      "arn:aws:sagemaker:${local.region}:${local.account_id}:experiment-trial/${local.training_job_prefix}*",
      "arn:aws:sagemaker:${local.region}:${local.account_id}:experiment-trial-component/${local.training_job_prefix}*",
    ]
  }

  # The job registers the model version it trained in the model package group.
  statement {
    sid = "RegisterTheModel"
    actions = [
      "sagemaker:CreateModelPackage",
      "sagemaker:DescribeModelPackage",
      "sagemaker:UpdateModelPackage",
      "sagemaker:DescribeModelPackageGroup",
      "sagemaker:AddTags",
    ]
    resources = [
      aws_sagemaker_model_package_group.this.arn,
      "arn:aws:sagemaker:${local.region}:${local.account_id}:model-package/${aws_sagemaker_model_package_group.this.model_package_group_name}/*",
    ]
  }

  statement {
    sid       = "ListTheRegistry"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"] # why: ListModelPackages supports no resource types; a scoped ARN would deny every call
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "train-on-the-lake"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

# --- the loop Lambdas ----------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_cloudwatch_log_group" "monitor" {
  name              = "/aws/lambda/${local.monitor_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "promote" {
  name              = "/aws/lambda/${local.promote_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_iam_role" "monitor" {
  name               = local.monitor_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

resource "aws_iam_role" "promote" {
  name               = local.promote_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "monitor" {
  #checkov:skip=CKV_AWS_356:ListModelPackages supports no resource types (AWS Service Authorization Reference) and is granted on "*"; checkov lists a model-package type for it
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*", "${var.lake_bucket_arn}/${var.registry_prefix}/*"]
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*", "${var.registry_prefix}/*"]
    }
  }

  statement {
    sid       = "WriteTheDecisionLog"
    actions   = ["s3:PutObject"]
    resources = ["${var.lake_bucket_arn}/${var.registry_prefix}/decisions/*"]
  }

  # A training job's "train" channel is a manifest file of its window's lake objects
  # (recloop.training.channel), written under RECLOOP_SAGEMAKER_OUTPUT_URI before the job starts.
  statement {
    sid       = "WriteTrainingChannels"
    actions   = ["s3:PutObject"]
    resources = ["${var.lake_bucket_arn}/${var.registry_prefix}/jobs/channels/*"]
  }

  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.lake_kms_key_arn, var.kms_key_arn]
  }

  statement {
    sid       = "ReadItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.visitor_key_secret_arn]
  }

  statement {
    sid       = "StartTraining"
    actions   = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:AddTags"]
    resources = [local.training_job_arn_pattern]
  }

  statement {
    sid       = "AvoidDuplicateJobs"
    actions   = ["sagemaker:ListTrainingJobs"]
    resources = ["*"] # why: List* calls on SageMaker have no resource-level permissions
  }

  statement {
    sid       = "ListTheRegistry"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"] # why: ListModelPackages supports no resource types; a scoped ARN would deny every call
  }

  statement {
    sid       = "ReadTheRegistry"
    actions   = ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"]
    resources = [aws_sagemaker_model_package_group.this.arn, "arn:aws:sagemaker:${local.region}:${local.account_id}:model-package/${aws_sagemaker_model_package_group.this.model_package_group_name}/*"]
  }

  statement {
    # why: the guard window runs in the monitor; a rollback rejects the new champion (and
    # re-approves the previous one if it was rejected meanwhile): recloop.loop.controller
    sid       = "RollBackAChampion"
    actions   = ["sagemaker:UpdateModelPackage"]
    resources = ["arn:aws:sagemaker:${local.region}:${local.account_id}:model-package/${aws_sagemaker_model_package_group.this.model_package_group_name}/*"]
  }

  statement {
    sid       = "PassTheTrainingRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.monitor.arn}:*"]
  }

  statement {
    sid       = "XRayTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # why: X-Ray trace APIs do not support resource-level permissions
  }
}

resource "aws_iam_role_policy" "monitor" {
  name   = "monitor-and-start-training"
  role   = aws_iam_role.monitor.id
  policy = data.aws_iam_policy_document.monitor.json
}

data "aws_iam_policy_document" "promote" {
  #checkov:skip=CKV_AWS_111:only the VPC network-interface and X-Ray statements use "*": those APIs have no resource-level permissions
  #checkov:skip=CKV_AWS_356:only the VPC network-interface and X-Ray statements use "*": those APIs have no resource-level permissions
  statement {
    sid       = "ReadLakeAndRegistry"
    actions   = ["s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.lake_prefix}/*", "${var.lake_bucket_arn}/${var.registry_prefix}/*"]
  }

  statement {
    sid       = "WriteRegistryRecords"
    actions   = ["s3:PutObject"]
    resources = ["${var.lake_bucket_arn}/${var.registry_prefix}/*"]
  }

  statement {
    sid       = "ListLakeAndRegistry"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*", "${var.registry_prefix}/*"]
    }
  }

  statement {
    sid       = "Keys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.lake_kms_key_arn, var.kms_key_arn]
  }

  statement {
    sid       = "ReadItsSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.visitor_key_secret_arn, var.features_secret_arn, var.candidates_secret_arn]
  }

  statement {
    sid       = "ReadTheFinishedJob"
    actions   = ["sagemaker:DescribeTrainingJob"]
    resources = [local.training_job_arn_pattern]
  }

  statement {
    sid = "GateAndApprove"
    actions = [
      "sagemaker:CreateModelPackage",
      "sagemaker:UpdateModelPackage",
      "sagemaker:DescribeModelPackage",
      "sagemaker:DescribeModelPackageGroup",
      "sagemaker:AddTags",
    ]
    resources = [aws_sagemaker_model_package_group.this.arn, "arn:aws:sagemaker:${local.region}:${local.account_id}:model-package/${aws_sagemaker_model_package_group.this.model_package_group_name}/*"]
  }

  statement {
    sid       = "ListTheRegistry"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"] # why: ListModelPackages supports no resource types; a scoped ARN would deny every call
  }

  statement {
    sid       = "DeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.promote_dlq.arn]
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.promote.arn}:*"]
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

resource "aws_sqs_queue" "promote_dlq" {
  name                      = "${local.promote_name}-dlq"
  kms_master_key_id         = var.kms_key_arn
  message_retention_seconds = 1209600
  tags                      = var.tags
}

resource "aws_iam_role_policy" "promote" {
  name   = "gate-approve-publish"
  role   = aws_iam_role.promote.id
  policy = data.aws_iam_policy_document.promote.json
}

resource "aws_security_group" "promote" {
  name        = local.promote_name
  description = "promote Lambda: egress to Elasticsearch (PrivateLink), DocumentDB and AWS APIs"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "promote_https" {
  security_group_id = aws_security_group.promote.id
  description       = "AWS APIs and the Elastic Cloud PrivateLink endpoint (443 and 9243)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "promote_elastic" {
  security_group_id = aws_security_group.promote.id
  description       = "Elastic Cloud over PrivateLink listens on 9243"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 9243
  to_port           = 9243
}

resource "aws_vpc_security_group_egress_rule" "promote_documentdb" {
  security_group_id            = aws_security_group.promote.id
  description                  = "DocumentDB: content metadata"
  referenced_security_group_id = var.features_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

resource "aws_vpc_security_group_ingress_rule" "documentdb_from_promote" {
  security_group_id            = var.features_security_group_id
  description                  = "from the promote Lambda"
  referenced_security_group_id = aws_security_group.promote.id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

locals {
  # Names follow recloop.config.Settings (RECLOOP_<FIELD>). Secrets go by reference
  # (RECLOOP_<FIELD>_SECRET_ARN, read at start-up by recloop.config_secrets with the function's
  # role): a Lambda's environment is readable by whoever may read its configuration.
  loop_environment = {
    RECLOOP_ENVIRONMENT                  = var.environment
    RECLOOP_VISITOR_KEY_SECRET_ARN       = var.visitor_key_secret_arn
    RECLOOP_LAKE_URI                     = var.lake_uri
    RECLOOP_REGISTRY_URI                 = "sagemaker://${aws_sagemaker_model_package_group.this.model_package_group_name}"
    RECLOOP_REGISTRY_ARTIFACTS_URI       = var.registry_artifacts_uri
    RECLOOP_MONITOR_DECISION_LOG_URI     = "${var.registry_artifacts_uri}/decisions/decisions.jsonl"
    RECLOOP_SAGEMAKER_ROLE_ARN           = aws_iam_role.sagemaker.arn
    RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI = "${aws_ecr_repository.this.repository_url}:${var.training_image_tag}"
    RECLOOP_SAGEMAKER_INSTANCE_TYPE      = var.training_instance_type
    RECLOOP_SAGEMAKER_OUTPUT_URI         = "${var.registry_artifacts_uri}/jobs"
    POWERTOOLS_METRICS_NAMESPACE         = var.metrics_namespace
    POWERTOOLS_LOG_LEVEL                 = "INFO"
  }
}

resource "aws_lambda_function" "monitor" {
  #checkov:skip=CKV_AWS_116:a missed or failed monitor run is repeated by the next schedule tick, so a dead-letter queue would hold nothing to act on
  #checkov:skip=CKV_AWS_117:the monitor only calls AWS APIs (S3, SageMaker, CloudWatch); a VPC would add NAT cost and no isolation
  #checkov:skip=CKV_AWS_272:code signing applies to zip packages; this function is a container image from an immutable, scanned ECR repository
  function_name = local.monitor_name
  description   = "Engagement monitor: drop or stale model -> SageMaker training job"
  role          = aws_iam_role.monitor.arn
  package_type  = "Image"
  image_uri     = var.monitor_image_uri
  memory_size   = 1024
  timeout       = 300
  # One monitor at a time (two could start duplicate training jobs), once the account's
  # concurrency quota allows reserving; until then ListTrainingJobs guards against duplicates.
  reserved_concurrent_executions = var.reserve_concurrency ? 1 : null
  kms_key_arn                    = var.kms_key_arn

  image_config {
    command = ["handler.lambda_handler"]
  }

  environment {
    variables = merge(local.loop_environment, { POWERTOOLS_SERVICE_NAME = "monitor" })
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.monitor.name
  }

  tags = merge(var.tags, { "recloop:source" = "lambdas/monitor" })

  depends_on = [aws_iam_role_policy.monitor]
}

resource "aws_lambda_function" "promote" {
  #checkov:skip=CKV_AWS_272:code signing applies to zip packages; this function is a container image from an immutable, scanned ECR repository
  function_name = local.promote_name
  description   = "Training finished -> gate against the champion -> register, approve, publish"
  role          = aws_iam_role.promote.arn
  package_type  = "Image"
  image_uri     = var.promote_image_uri
  memory_size   = 3008
  timeout       = 900
  # Promotions serialised (two at once could both flip the alias) once the quota allows it.
  reserved_concurrent_executions = var.reserve_concurrency ? 1 : null
  kms_key_arn                    = var.kms_key_arn

  # A finished training job whose promotion failed after every retry must not vanish silently.
  dead_letter_config {
    target_arn = aws_sqs_queue.promote_dlq.arn
  }

  image_config {
    command = ["handler.lambda_handler"]
  }

  environment {
    variables = merge(local.loop_environment, {
      POWERTOOLS_SERVICE_NAME           = "promote"
      RECLOOP_FEATURES_URI_SECRET_ARN   = var.features_secret_arn
      RECLOOP_CANDIDATES_URI_SECRET_ARN = var.candidates_secret_arn
    })
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [aws_security_group.promote.id]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.promote.name
  }

  tags = merge(var.tags, { "recloop:source" = "lambdas/promote" })

  depends_on = [aws_iam_role_policy.promote]
}

# --- EventBridge wiring --------------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "monitor_schedule" {
  name                = "${local.monitor_name}-schedule"
  description         = "Run the engagement monitor"
  schedule_expression = var.monitor_schedule
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "monitor_schedule" {
  rule = aws_cloudwatch_event_rule.monitor_schedule.name
  arn  = aws_lambda_function.monitor.arn

  retry_policy {
    maximum_retry_attempts       = 2
    maximum_event_age_in_seconds = 600
  }
}

resource "aws_lambda_permission" "monitor_schedule" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.monitor.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.monitor_schedule.arn
}

resource "aws_cloudwatch_event_rule" "training_state_change" {
  name        = "${local.promote_name}-training-state-change"
  description = "A recloop SageMaker training job finished"
  event_pattern = jsonencode({
    source        = ["aws.sagemaker"]
    "detail-type" = ["SageMaker Training Job State Change"]
    detail = {
      TrainingJobStatus = ["Completed", "Failed", "Stopped"]
      TrainingJobName   = [{ prefix = local.training_job_prefix }]
    }
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "training_state_change" {
  rule = aws_cloudwatch_event_rule.training_state_change.name
  arn  = aws_lambda_function.promote.arn

  retry_policy {
    maximum_retry_attempts       = 4
    maximum_event_age_in_seconds = 3600
  }
}

resource "aws_lambda_permission" "training_state_change" {
  statement_id  = "AllowTrainingStateChange"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.promote.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.training_state_change.arn
}
