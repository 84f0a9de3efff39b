# The recommendation API:
#   CloudFront (WAF, no caching of personalised responses)
#     -> API Gateway HTTP API (JWT auth, stage throttling)
#     -> VPC link -> internal ALB (prod listener + test listener, blue and green target groups)
#     -> ECS Fargate service (CodeDeploy blue/green, automatic rollback on alarms, CPU autoscaling)

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

locals {
  region         = data.aws_region.current.region
  container_name = "serving"
  container_port = 8000
  prod_port      = 80
  test_port      = 8080
  liveness_path  = "/healthz"

  # How long a deployment takes until CodeDeploy calls it Succeeded: the green task set starting
  # and passing health checks (allowance below), the traffic shift of the deployment config,
  # then the blue task set kept for blue_termination_wait_minutes. deploy-serving.sh waits this
  # long; AWS CLI's `deploy wait` gives up after 30 minutes, before a prod deployment ends.
  traffic_shift_minutes = {
    "CodeDeployDefault.ECSAllAtOnce"                    = 0
    "CodeDeployDefault.ECSLinear10PercentEvery1Minutes" = 10
    "CodeDeployDefault.ECSLinear10PercentEvery3Minutes" = 30
    "CodeDeployDefault.ECSCanary10Percent5Minutes"      = 5
    "CodeDeployDefault.ECSCanary10Percent15Minutes"     = 15
  }
  green_start_allowance_minutes = 15
  deployment_wait_minutes = (
    local.green_start_allowance_minutes
    + local.traffic_shift_minutes[var.deployment_config_name]
    + var.blue_termination_wait_minutes
  )
}

# --- image ---------------------------------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  name                 = "${var.name}-serving"
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
  # Only untagged images expire. A count rule over tagged images would expire the image prod
  # still runs once enough newer ones were pushed, and a rollback or a scale-out would then
  # fail to pull. Old tags are removed by hand (docs/deploy.md, "Image retention").
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

# --- ECS -----------------------------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "service" {
  name              = "/ecs/${var.name}/serving"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# Execution role: what ECS itself needs to start the task (pull, log, inject secrets).
resource "aws_iam_role" "execution" {
  name               = "${var.name}-serving-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # why: GetAuthorizationToken is account-wide and has no resource-level permissions
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.service.arn}:*"]
  }

  statement {
    sid       = "InjectSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.features_secret_arn, var.candidates_secret_arn, var.visitor_key_secret_arn, aws_secretsmanager_secret.origin.arn]
  }

  statement {
    sid       = "DecryptImageAndSecrets"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "start-serving-task"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# Task role: what the running service may call (registry, EventSink), nothing else.
resource "aws_iam_role" "task" {
  name               = "${var.name}-serving-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  #checkov:skip=CKV_AWS_356:ListModelPackages supports no resource types (AWS Service Authorization Reference) and is granted on "*"; checkov lists a model-package type for it
  statement {
    sid       = "ReadModelArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${var.lake_bucket_arn}/${var.registry_prefix}/*"]
  }

  statement {
    sid       = "ListModelArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [var.lake_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.registry_prefix}/*"]
    }
  }

  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt"]
    resources = [var.lake_kms_key_arn]
  }

  statement {
    sid       = "WatchTheRegistry"
    actions   = ["sagemaker:DescribeModelPackage", "sagemaker:DescribeModelPackageGroup"]
    resources = [var.model_package_group_arn, "arn:aws:sagemaker:${local.region}:${data.aws_caller_identity.current.account_id}:model-package/${var.model_package_group_name}/*"]
  }

  statement {
    sid       = "ListTheRegistry"
    actions   = ["sagemaker:ListModelPackages"]
    resources = ["*"] # why: ListModelPackages supports no resource types; a scoped ARN would deny every call
  }

  statement {
    sid       = "XRayTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # why: X-Ray trace APIs do not support resource-level permissions
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "serve-recommendations"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

resource "aws_iam_role_policy_attachment" "task_events" {
  role       = aws_iam_role.task.name
  policy_arn = var.events_producer_policy_arn
}

resource "aws_ecs_task_definition" "this" {
  family = "${var.name}-serving"
  # Keep every revision registered: rollback-serving.sh redeploys the previous one, which a
  # replaced (deregistered) revision could no longer be.
  skip_destroy             = true
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory_mb
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root file system is read-only; models are downloaded to, and memory-mapped from, this
  # task-local volume, so every uvicorn worker maps the same pages.
  volume {
    name = "models"
  }
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = local.container_name
    image                  = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    stopTimeout            = 30
    portMappings = [{
      containerPort = local.container_port
      protocol      = "tcp"
    }]
    mountPoints = [
      { sourceVolume = "models", containerPath = "/var/cache/recloop", readOnly = false },
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
    ]
    environment = [
      { name = "RECLOOP_ENVIRONMENT", value = var.environment },
      { name = "RECLOOP_REGISTRY_URI", value = "sagemaker://${var.model_package_group_name}" },
      { name = "RECLOOP_REGISTRY_ARTIFACTS_URI", value = var.registry_artifacts_uri },
      { name = "RECLOOP_MODEL_CACHE_DIR", value = "/var/cache/recloop/models" },
      { name = "RECLOOP_MONITOR_SERVICE_METRICS_URI", value = "file:///var/cache/recloop/metrics/service.jsonl" },
      { name = "RECLOOP_EVENTS_URI", value = "kinesis://${var.events_stream_name}" },
      { name = "RECLOOP_CORS_ORIGINS", value = jsonencode(var.cors_allowed_origins) },
      { name = "POWERTOOLS_METRICS_NAMESPACE", value = var.metrics_namespace },
      { name = "POWERTOOLS_SERVICE_NAME", value = "serving" },
      { name = "WEB_CONCURRENCY", value = tostring(var.web_concurrency) },
    ]
    secrets = [
      { name = "RECLOOP_FEATURES_URI", valueFrom = var.features_secret_arn },
      { name = "RECLOOP_CANDIDATES_URI", valueFrom = var.candidates_secret_arn },
      { name = "RECLOOP_VISITOR_KEY", valueFrom = var.visitor_key_secret_arn },
      { name = "RECLOOP_ORIGIN_SECRET", valueFrom = aws_secretsmanager_secret.origin.arn },
    ]
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "serving"
        mode                  = "non-blocking"
        max-buffer-size       = "25m"
      }
    }
  }])

  tags = var.tags
}

# --- network -------------------------------------------------------------------------------------

resource "aws_security_group" "vpc_link" {
  name        = "${var.name}-api-vpc-link"
  description = "API Gateway VPC link: egress to the internal ALB only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Internal ALB: reachable from the API Gateway VPC link only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-serving-tasks"
  description = "Serving tasks: from the ALB on the container port; to AWS APIs and the stores"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "vpc_link_to_alb" {
  for_each                     = toset([tostring(local.prod_port), tostring(local.test_port)])
  security_group_id            = aws_security_group.vpc_link.id
  description                  = "to the ALB listener on ${each.key}"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_vpc_link" {
  for_each                     = toset([tostring(local.prod_port), tostring(local.test_port)])
  security_group_id            = aws_security_group.alb.id
  description                  = "from the API Gateway VPC link on ${each.key}"
  referenced_security_group_id = aws_security_group.vpc_link.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "to the serving tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.container_port
  to_port                      = local.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  for_each          = toset(["443", "9243"])
  security_group_id = aws_security_group.tasks.id
  description       = "AWS APIs, ECR and Elastic Cloud over PrivateLink (port ${each.key})"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "tasks_documentdb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "DocumentDB: user and item features"
  referenced_security_group_id = var.features_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

resource "aws_vpc_security_group_ingress_rule" "documentdb_from_tasks" {
  security_group_id            = var.features_security_group_id
  description                  = "from the serving tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = 27017
  to_port                      = 27017
}

# --- ALB: one production listener, one test listener, two target groups -------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:every request is logged by the API Gateway stage access log (and WAF logs); ALB access logs would duplicate them
  #checkov:skip=CKV2_AWS_28:the ALB is internal; WAF sits on CloudFront, the only public entry
  #checkov:skip=CKV_AWS_150:deletion protection follows var.deletion_protection: on in prod, off in dev so that dev can be destroyed
  #checkov:skip=CKV2_AWS_20:the internal ALB is reached only through the API Gateway VPC link; TLS terminates at CloudFront and API Gateway
  name                       = "${var.name}-serving"
  internal                   = true
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 30
  tags                       = var.tags
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:targets sit in private subnets behind an internal ALB; TLS terminates at CloudFront and API Gateway
  for_each             = toset(["blue", "green"])
  name                 = "${var.name}-${each.key}"
  port                 = local.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  # Liveness, not readiness: the load balancer (and so CodeDeploy's green task set) asks only
  # whether the process answers. /readyz needs a loaded model and live backends: a fresh
  # environment (no model yet) would never turn healthy, and one DocumentDB or Elasticsearch
  # hiccup would mark every task unhealthy at once. A backend outage gives degraded answers.
  health_check {
    path                = local.liveness_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "prod" {
  #checkov:skip=CKV_AWS_2:internal listener behind the API Gateway VPC link; clients speak HTTPS to CloudFront and API Gateway
  #checkov:skip=CKV_AWS_103:no TLS on this internal listener (see CKV_AWS_2)
  load_balancer_arn = aws_lb.this.arn
  port              = local.prod_port
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this["blue"].arn
  }

  # CodeDeploy swaps the target group on every deployment.
  lifecycle {
    ignore_changes = [default_action]
  }
}

resource "aws_lb_listener" "test" {
  #checkov:skip=CKV_AWS_2:internal test listener, used by CodeDeploy to check the replacement task set before traffic moves
  #checkov:skip=CKV_AWS_103:no TLS on this internal listener (see CKV_AWS_2)
  load_balancer_arn = aws_lb.this.arn
  port              = local.test_port
  protocol          = "HTTP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this["green"].arn
  }

  lifecycle {
    ignore_changes = [default_action]
  }
}

resource "aws_ecs_service" "this" {
  name                              = "${var.name}-serving"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this.arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  health_check_grace_period_seconds = 120
  enable_execute_command            = false
  propagate_tags                    = "SERVICE"

  deployment_controller {
    type = "CODE_DEPLOY"
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this["blue"].arn
    container_name   = local.container_name
    container_port   = local.container_port
  }

  # CodeDeploy owns the running task definition and target group; autoscaling owns the count.
  # A new image is rolled out by a blue/green deployment (terraform/scripts/deploy-serving.sh),
  # never by Terraform replacing tasks in place.
  lifecycle {
    ignore_changes = [task_definition, load_balancer, desired_count]
  }

  depends_on = [aws_lb_listener.prod, aws_lb_listener.test]

  tags = var.tags
}

# --- autoscaling on CPU --------------------------------------------------------------------------

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-serving-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# --- blue/green with automatic rollback ----------------------------------------------------------

# These alarms guard deployments: while one is in ALARM, CodeDeploy stops the deployment and
# shifts traffic back to the blue task set, which is still running.
resource "aws_cloudwatch_metric_alarm" "deploy_5xx" {
  alarm_name          = "${var.name}-serving-deploy-5xx"
  alarm_description   = "Target 5xx during a deployment: CodeDeploy rolls back. Runbook: docs/deploy.md#serving-deploy-5xx"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_Target_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = var.rollback_5xx_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "deploy_latency" {
  alarm_name          = "${var.name}-serving-deploy-p99"
  alarm_description   = "p99 latency during a deployment: CodeDeploy rolls back. Runbook: docs/deploy.md#serving-deploy-p99"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = aws_lb.this.arn_suffix }
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.rollback_p99_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_codedeploy_app" "this" {
  name             = "${var.name}-serving"
  compute_platform = "ECS"
  tags             = var.tags
}

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "codedeploy" {
  name               = "${var.name}-serving-codedeploy"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
  tags               = var.tags
}

# AWS's managed policy for CodeDeploy ECS blue/green: it must create task sets and modify
# listeners and rules of any service it deploys.
resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:aws:iam::aws:policy/AWSCodeDeployRoleForECS"
}

resource "aws_codedeploy_deployment_group" "this" {
  app_name               = aws_codedeploy_app.this.name
  deployment_group_name  = "${var.name}-serving"
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = var.deployment_config_name

  deployment_style {
    deployment_option = "WITH_TRAFFIC_CONTROL"
    deployment_type   = "BLUE_GREEN"
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout = "CONTINUE_DEPLOYMENT"
    }

    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.blue_termination_wait_minutes
    }
  }

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }

  alarm_configuration {
    enabled = true
    alarms = [
      aws_cloudwatch_metric_alarm.deploy_5xx.alarm_name,
      aws_cloudwatch_metric_alarm.deploy_latency.alarm_name,
    ]
  }

  ecs_service {
    cluster_name = aws_ecs_cluster.this.name
    service_name = aws_ecs_service.this.name
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [aws_lb_listener.prod.arn]
      }

      test_traffic_route {
        listener_arns = [aws_lb_listener.test.arn]
      }

      target_group {
        name = aws_lb_target_group.this["blue"].name
      }

      target_group {
        name = aws_lb_target_group.this["green"].name
      }
    }
  }

  tags = var.tags
}

# --- auth: Cognito issues the JWTs the API accepts ----------------------------------------------

resource "aws_cognito_user_pool" "this" {
  name                = "${var.name}-api"
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  mfa_configuration   = "OFF"

  password_policy {
    minimum_length    = 14
    require_lowercase = true
    require_uppercase = true
    require_numbers   = true
    require_symbols   = true
  }

  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  tags = var.tags
}

resource "aws_cognito_user_pool_domain" "this" {
  domain       = "${var.name}-api-${data.aws_caller_identity.current.account_id}"
  user_pool_id = aws_cognito_user_pool.this.id
}

resource "aws_cognito_resource_server" "this" {
  identifier   = "recloop"
  name         = "recloop API"
  user_pool_id = aws_cognito_user_pool.this.id

  scope {
    scope_name        = "recommendations"
    scope_description = "read recommendations and post tracker events"
  }
}

# Machine-to-machine client (client credentials) for the web frontend's backend and the CI smoke
# test; its secret is read with `aws cognito-idp describe-user-pool-client`.
resource "aws_cognito_user_pool_client" "this" {
  name                                 = "${var.name}-frontend"
  user_pool_id                         = aws_cognito_user_pool.this.id
  generate_secret                      = true
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_flows                  = ["client_credentials"]
  allowed_oauth_scopes                 = ["${aws_cognito_resource_server.this.identifier}/recommendations"]
  supported_identity_providers         = ["COGNITO"]
  access_token_validity                = 60
  token_validity_units {
    access_token = "minutes"
  }
}

# --- API Gateway HTTP API ------------------------------------------------------------------------

resource "aws_apigatewayv2_api" "this" {
  name          = "${var.name}-api"
  protocol_type = "HTTP"
  description   = "recloop recommendation API"

  dynamic "cors_configuration" {
    for_each = length(var.cors_allowed_origins) > 0 ? [1] : []
    content {
      allow_origins = var.cors_allowed_origins
      allow_methods = ["GET", "POST", "OPTIONS"]
      allow_headers = ["authorization", "content-type"]
      max_age       = 600
    }
  }

  tags = var.tags
}

resource "aws_apigatewayv2_vpc_link" "this" {
  name               = "${var.name}-api"
  subnet_ids         = var.subnet_ids
  security_group_ids = [aws_security_group.vpc_link.id]
  tags               = var.tags
}

resource "aws_apigatewayv2_integration" "this" {
  api_id               = aws_apigatewayv2_api.this.id
  integration_type     = "HTTP_PROXY"
  integration_method   = "ANY"
  integration_uri      = aws_lb_listener.prod.arn
  connection_type      = "VPC_LINK"
  connection_id        = aws_apigatewayv2_vpc_link.this.id
  timeout_milliseconds = 10000
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.this.id
  name             = "cognito-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = "https://cognito-idp.${local.region}.amazonaws.com/${aws_cognito_user_pool.this.id}"
    audience = concat([aws_cognito_user_pool_client.this.id], var.jwt_audiences)
  }
}

resource "aws_apigatewayv2_route" "proxy" {
  api_id               = aws_apigatewayv2_api.this.id
  route_key            = "ANY /{proxy+}"
  target               = "integrations/${aws_apigatewayv2_integration.this.id}"
  authorization_type   = "JWT"
  authorizer_id        = aws_apigatewayv2_authorizer.jwt.id
  authorization_scopes = ["${aws_cognito_resource_server.this.identifier}/recommendations"]
}

# Liveness only (no data): uptime checks and CloudFront origin probes need no token.
resource "aws_apigatewayv2_route" "healthz" {
  #checkov:skip=CKV_AWS_309:/healthz returns liveness only, no data; uptime probes carry no token
  api_id             = aws_apigatewayv2_api.this.id
  route_key          = "GET /healthz"
  target             = "integrations/${aws_apigatewayv2_integration.this.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/apigateway/${var.name}-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_apigatewayv2_stage" "this" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.throttling_rate_limit
    throttling_burst_limit   = var.throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      routeKey       = "$context.routeKey"
      path           = "$context.path"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latencyMs      = "$context.responseLatency"
      integrationMs  = "$context.integrationLatency"
      authError      = "$context.authorizer.error"
      integrationErr = "$context.integrationErrorMessage"
    })
  }

  tags = var.tags
}

# --- CloudFront + WAF ----------------------------------------------------------------------------

# API Gateway's execute-api endpoint is public, so a client could call it directly and skip
# CloudFront and the WAF. CloudFront sends this secret in X-Origin-Verify with every request
# (overwriting any the viewer sent); the service answers 403 to requests without it, except
# the load balancer's /healthz (recloop.serving.origin). Rotate: taint random_password.origin,
# apply, redeploy (both sides change in one apply; tasks read it at start).
resource "random_password" "origin" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "origin" {
  #checkov:skip=CKV2_AWS_57:rotated by replacing random_password.origin in one apply (CloudFront and the task definition change together), not by a rotation Lambda
  name                    = "${var.name}/origin-secret"
  description             = "RECLOOP_ORIGIN_SECRET: the X-Origin-Verify value CloudFront adds"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "origin" {
  secret_id     = aws_secretsmanager_secret.origin.id
  secret_string = random_password.origin.result
}

# Every response of this API is personalised (or a write): nothing is ever cached. With all TTLs
# at 0 CloudFront forwards every request, and AllViewerExceptHostHeader passes the Authorization
# header and query string to API Gateway (allowed only because caching is off).
resource "aws_cloudfront_cache_policy" "no_cache" {
  name        = "${var.name}-never-cache"
  comment     = "Personalised responses: never cached"
  min_ttl     = 0
  default_ttl = 0
  max_ttl     = 0

  parameters_in_cache_key_and_forwarded_to_origin {
    enable_accept_encoding_brotli = false
    enable_accept_encoding_gzip   = false

    cookies_config {
      cookie_behavior = "none"
    }
    headers_config {
      header_behavior = "none"
    }
    query_strings_config {
      query_string_behavior = "none"
    }
  }
}

data "aws_cloudfront_origin_request_policy" "all_viewer_except_host" {
  name = "Managed-AllViewerExceptHostHeader"
}

resource "aws_cloudfront_response_headers_policy" "this" {
  name    = "${var.name}-security-headers"
  comment = "HSTS, no sniffing, no framing, and no shared caches downstream"

  security_headers_config {
    strict_transport_security {
      access_control_max_age_sec = 63072000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    referrer_policy {
      referrer_policy = "strict-origin-when-cross-origin"
      override        = true
    }
  }

  custom_headers_config {
    items {
      header   = "Cache-Control"
      value    = "private, no-store"
      override = true
    }
  }
}

resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_158:WAF on CloudFront logs to us-east-1, where this stack has no customer-managed key; CloudWatch encrypts the group with its own key
  provider          = aws.us_east_1
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_wafv2_web_acl" "this" {
  provider    = aws.us_east_1
  name        = "${var.name}-edge"
  description = "recloop API at the edge: AWS managed rules and a per-IP rate limit"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  rule {
    name     = "aws-common"
    priority = 10
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"

        # SizeRestrictions_BODY blocks bodies over 8 KB, and POST /events accepts up to 500
        # tracker events (tens of KB): it only counts here; rule body-size-outside-events keeps
        # the 8 KB limit on every other path.
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "aws-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "body-size-outside-events"
    priority = 15
    action {
      block {}
    }
    statement {
      and_statement {
        statement {
          size_constraint_statement {
            comparison_operator = "GT"
            size                = var.waf_max_body_bytes
            field_to_match {
              body {
                oversize_handling = "MATCH"
              }
            }
            text_transformation {
              priority = 0
              type     = "NONE"
            }
          }
        }
        statement {
          not_statement {
            statement {
              byte_match_statement {
                positional_constraint = "EXACTLY"
                search_string         = var.events_path
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "NONE"
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "body-size-outside-events"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 20
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "aws-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-ip-reputation"
    priority = 30
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAmazonIpReputationList"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "aws-ip-reputation"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 40
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit              = var.waf_rate_limit_per_5min
        aggregate_key_type = "IP"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "rate-limit-per-ip"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-edge"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  provider                = aws.us_east_1
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  # Tokens must never reach the logs.
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_305:an API origin, not a website: there is no root object to serve
  #checkov:skip=CKV_AWS_86:every request is logged by the API Gateway stage access log and the WAF log
  #checkov:skip=CKV_AWS_310:a single origin (the regional API); CloudFront origin failover only retries GET/HEAD and would hide a regional outage from on-call
  #checkov:skip=CKV_AWS_374:the recommendation API serves every country the website serves; no geo restriction
  #checkov:skip=CKV_AWS_174:with the default cloudfront.net certificate CloudFront fixes the minimum protocol; set cloudfront_certificate_arn for TLSv1.2_2021
  #checkov:skip=CKV2_AWS_42:a custom certificate needs a domain the account owns; cloudfront_certificate_arn switches it on
  #checkov:skip=CKV2_AWS_47:the attached WAF includes AWSManagedRulesKnownBadInputsRuleSet (Log4j rules) through the web ACL
  enabled         = true
  is_ipv6_enabled = true
  comment         = "${var.name} recommendation API"
  price_class     = "PriceClass_100"
  aliases         = var.cloudfront_aliases
  web_acl_id      = aws_wafv2_web_acl.this.arn
  http_version    = "http2and3"

  origin {
    origin_id   = "api"
    domain_name = replace(aws_apigatewayv2_api.this.api_endpoint, "https://", "")

    custom_header {
      name  = "X-Origin-Verify"
      value = random_password.origin.result
    }

    custom_origin_config {
      http_port              = 80
      https_port             = 443
      origin_protocol_policy = "https-only"
      origin_ssl_protocols   = ["TLSv1.2"]
    }
  }

  default_cache_behavior {
    target_origin_id           = "api"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = aws_cloudfront_cache_policy.no_cache.id
    origin_request_policy_id   = data.aws_cloudfront_origin_request_policy.all_viewer_except_host.id
    response_headers_policy_id = aws_cloudfront_response_headers_policy.this.id
    compress                   = true
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.cloudfront_certificate_arn == null
    acm_certificate_arn            = var.cloudfront_certificate_arn
    ssl_support_method             = var.cloudfront_certificate_arn == null ? null : "sni-only"
    minimum_protocol_version       = var.cloudfront_certificate_arn == null ? "TLSv1" : "TLSv1.2_2021"
  }

  tags = var.tags
}
