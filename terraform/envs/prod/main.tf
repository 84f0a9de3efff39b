# recloop, prod environment: every module wired together. Values that differ between
# environments are literal here so that a review of this file shows them all.

locals {
  name = "recloop-prod"
  tags = {
    project     = "recloop"
    environment = "prod"
    managed-by  = "terraform"
  }
  lambda_repository = module.ingest.lambda_repository_url

  # Reserved Lambda concurrency: 50 for the weblog processor, 1 each for monitor, promote and
  # compaction. Lambda keeps 100 executions unreserved, so reserving needs a quota of at least
  # 153; a new account has 10 and the apply would fail. Until the quota is raised
  # (docs/deploy.md) nothing is reserved.
  weblog_reserved_concurrency = 50
  single_reserved_functions   = 3
  reserve_lambda_concurrency  = var.lambda_concurrency_quota - local.weblog_reserved_concurrency - local.single_reserved_functions >= 100
}

module "platform" {
  source      = "../../modules/platform"
  name        = local.name
  alarm_email = var.alarm_email
}

module "network" {
  source             = "../../modules/network"
  name               = local.name
  cidr_block         = "10.50.0.0/16"
  az_count           = 3
  single_nat_gateway = false
  kms_key_arn        = module.platform.kms_key_arn
}

module "datalake" {
  source               = "../../modules/datalake"
  name                 = local.name
  force_destroy        = false
  kms_key_arn          = module.platform.kms_key_arn
  alarm_topic_arn      = module.platform.alarm_topic_arn
  compaction_image_uri = "${local.lambda_repository}:compact-${var.image_tag}"
  reserve_concurrency  = local.reserve_lambda_concurrency
}

module "stores" {
  source                           = "../../modules/stores"
  name                             = local.name
  kms_key_arn                      = module.platform.kms_key_arn
  vpc_id                           = module.network.vpc_id
  vpc_cidr_block                   = module.network.vpc_cidr_block
  subnet_ids                       = module.network.private_subnet_ids
  documentdb_instance_class        = "db.r6g.large"
  documentdb_instance_count        = 2
  documentdb_backup_retention_days = 35
  deletion_protection              = true
  elastic_region                   = var.region
  elastic_hot_size                 = "8g"
  elastic_privatelink_service_name = var.elastic_privatelink_service_name
  elastic_privatelink_domain       = "vpce.${var.region}.aws.elastic-cloud.com"
}

module "ingest" {
  source                     = "../../modules/ingest"
  name                       = local.name
  environment                = "prod"
  kms_key_arn                = module.platform.kms_key_arn
  lake_bucket_arn            = module.datalake.bucket_arn
  lake_kms_key_arn           = module.datalake.kms_key_arn
  lake_uri                   = module.datalake.lake_uri
  lake_prefix                = module.datalake.lake_prefix
  lambda_image_uri           = "${local.lambda_repository}:weblog_processor-${var.image_tag}"
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.private_subnet_ids
  features_secret_arn        = module.stores.features_secret_arn
  features_security_group_id = module.stores.documentdb_security_group_id
  visitor_key_secret_arn     = module.stores.visitor_key_secret_arn
  alarm_topic_arn            = module.platform.alarm_topic_arn
  reserved_concurrency       = local.reserve_lambda_concurrency ? local.weblog_reserved_concurrency : null

  # The no-weblogs alarm: EventsWritten sum < 1 for 3 periods of 5 minutes, missing data breaching.
  no_weblogs_period_seconds     = 300
  no_weblogs_evaluation_periods = 3
  maximum_retry_attempts        = 3
  maximum_record_age_seconds    = 3600
}

module "training" {
  source                     = "../../modules/training"
  name                       = local.name
  environment                = "prod"
  kms_key_arn                = module.platform.kms_key_arn
  lake_bucket_arn            = module.datalake.bucket_arn
  lake_kms_key_arn           = module.datalake.kms_key_arn
  lake_prefix                = module.datalake.lake_prefix
  registry_prefix            = module.datalake.registry_prefix
  lake_uri                   = module.datalake.lake_uri
  registry_artifacts_uri     = module.datalake.registry_uri
  monitor_image_uri          = "${local.lambda_repository}:monitor-${var.image_tag}"
  promote_image_uri          = "${local.lambda_repository}:promote-${var.image_tag}"
  training_image_tag         = "${var.training_image_variant}-${var.image_tag}"
  training_instance_type     = var.training_instance_type
  vpc_id                     = module.network.vpc_id
  subnet_ids                 = module.network.private_subnet_ids
  features_secret_arn        = module.stores.features_secret_arn
  features_security_group_id = module.stores.documentdb_security_group_id
  candidates_secret_arn      = module.stores.candidates_secret_arn
  visitor_key_secret_arn     = module.stores.visitor_key_secret_arn
  reserve_concurrency        = local.reserve_lambda_concurrency
}

module "serving" {
  source = "../../modules/serving"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                          = local.name
  environment                   = "prod"
  deletion_protection           = true
  kms_key_arn                   = module.platform.kms_key_arn
  vpc_id                        = module.network.vpc_id
  subnet_ids                    = module.network.private_subnet_ids
  image_tag                     = var.image_tag
  desired_count                 = 3
  min_count                     = 3
  max_count                     = 20
  cpu_target_percent            = 60
  deployment_config_name        = "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"
  blue_termination_wait_minutes = 30
  throttling_rate_limit         = 1000
  throttling_burst_limit        = 2000
  cors_allowed_origins          = var.cors_allowed_origins
  lake_bucket_arn               = module.datalake.bucket_arn
  lake_kms_key_arn              = module.datalake.kms_key_arn
  registry_prefix               = module.datalake.registry_prefix
  registry_artifacts_uri        = module.datalake.registry_uri
  model_package_group_arn       = module.training.model_package_group_arn
  model_package_group_name      = module.training.model_package_group_name
  events_stream_name            = module.ingest.stream_name
  events_producer_policy_arn    = module.ingest.producer_policy_arn
  features_secret_arn           = module.stores.features_secret_arn
  features_security_group_id    = module.stores.documentdb_security_group_id
  candidates_secret_arn         = module.stores.candidates_secret_arn
  visitor_key_secret_arn        = module.stores.visitor_key_secret_arn
  alarm_topic_arn               = module.platform.alarm_topic_arn
}

module "monitoring" {
  source           = "../../modules/monitoring"
  name             = local.name
  alarm_topic_arn  = module.platform.alarm_topic_arn
  alb_arn_suffix   = module.serving.alb_arn_suffix
  promote_dlq_name = module.training.promote_dlq_name
  extra_alarm_arns = [module.ingest.no_weblogs_alarm_arn]

  error_rate_threshold_percent  = 1
  p99_latency_threshold_seconds = 0.25
}
