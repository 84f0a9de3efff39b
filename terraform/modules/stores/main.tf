# Serving's backends, in private subnets only:
#  - DocumentDB (the FeatureStore): TLS required, storage encrypted with the shared KMS key,
#    automated backups, audit logs.
#  - Elasticsearch (the CandidateSource): an Elastic Cloud deployment through the `ec` provider,
#    reachable only over AWS PrivateLink from this VPC. Why Elastic Cloud and not AWS OpenSearch:
#    recloop uses the official elasticsearch 8/9 Python client (dense_vector kNN), which refuses
#    to talk to OpenSearch; and a managed Elastic deployment spares on-call a self-run cluster.
#  - Secrets Manager: DocumentDB connection string, Elasticsearch credentials, visitor hash key.

locals {
  # Amazon's CA bundle for DocumentDB TLS; both images ship it at this path (docker/).
  documentdb_ca_file = "/etc/ssl/certs/rds-global-bundle.pem"
  documentdb_user    = "recloop"
}

# --- DocumentDB ----------------------------------------------------------------------------------

resource "aws_security_group" "documentdb" {
  name        = "${var.name}-documentdb"
  description = "DocumentDB: admits only the serving tasks and the Lambdas (rules in their modules)"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_docdb_subnet_group" "this" {
  name       = "${var.name}-documentdb"
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_docdb_cluster_parameter_group" "this" {
  name        = "${var.name}-documentdb"
  family      = "docdb5.0"
  description = "TLS required, audit logs on"

  parameter {
    name  = "tls"
    value = "enabled"
  }

  parameter {
    name  = "audit_logs"
    value = "enabled"
  }

  tags = var.tags
}

resource "random_password" "documentdb" {
  length = 40
  # DocumentDB refuses / @ and " in passwords, and the password sits in a URI: letters and digits.
  special = false
}

resource "aws_cloudwatch_log_group" "documentdb" {
  for_each          = toset(["audit", "profiler"])
  name              = "/aws/docdb/${var.name}-features/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_docdb_cluster" "this" {
  cluster_identifier              = "${var.name}-features"
  engine                          = "docdb"
  engine_version                  = var.documentdb_engine_version
  master_username                 = local.documentdb_user
  master_password                 = random_password.documentdb.result
  db_subnet_group_name            = aws_docdb_subnet_group.this.name
  db_cluster_parameter_group_name = aws_docdb_cluster_parameter_group.this.name
  vpc_security_group_ids          = [aws_security_group.documentdb.id]
  storage_encrypted               = true
  kms_key_id                      = var.kms_key_arn
  backup_retention_period         = var.documentdb_backup_retention_days
  preferred_backup_window         = "02:00-03:00"
  preferred_maintenance_window    = "sun:04:00-sun:05:00"
  deletion_protection             = var.deletion_protection
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-features-final"
  enabled_cloudwatch_logs_exports = ["audit", "profiler"]
  tags                            = var.tags

  depends_on = [aws_cloudwatch_log_group.documentdb]
}

resource "aws_docdb_cluster_instance" "this" {
  count                      = var.documentdb_instance_count
  identifier                 = "${var.name}-features-${count.index}"
  cluster_identifier         = aws_docdb_cluster.this.id
  instance_class             = var.documentdb_instance_class
  auto_minor_version_upgrade = true
  tags                       = var.tags
}

# --- Elasticsearch on Elastic Cloud, over PrivateLink --------------------------------------------

resource "aws_security_group" "elastic_endpoint" {
  name        = "${var.name}-elastic-endpoint"
  description = "Elastic Cloud PrivateLink endpoint: HTTPS from inside the VPC only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "elastic_https" {
  for_each          = toset(["443", "9243"])
  security_group_id = aws_security_group.elastic_endpoint.id
  description       = "Elasticsearch HTTPS (port ${each.key}) from the VPC"
  cidr_ipv4         = var.vpc_cidr_block
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_endpoint" "elastic" {
  vpc_id              = var.vpc_id
  service_name        = var.elastic_privatelink_service_name
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.elastic_endpoint.id]
  private_dns_enabled = false
  tags                = merge(var.tags, { Name = "${var.name}-elastic" })
}

# Elastic's PrivateLink hostnames (<alias>.es.<domain>) resolve to the endpoint inside the VPC.
resource "aws_route53_zone" "elastic" {
  #checkov:skip=CKV2_AWS_38:DNSSEC signing is not supported for private hosted zones
  #checkov:skip=CKV2_AWS_39:query logging is for public zones; this private zone holds one wildcard CNAME
  name = var.elastic_privatelink_domain
  vpc {
    vpc_id = var.vpc_id
  }
  tags = var.tags
}

resource "aws_route53_record" "elastic" {
  zone_id = aws_route53_zone.elastic.zone_id
  name    = "*.${var.elastic_privatelink_domain}"
  type    = "CNAME"
  ttl     = 60
  records = [aws_vpc_endpoint.elastic.dns_entry[0].dns_name]
}

resource "ec_deployment_traffic_filter" "this" {
  name   = "${var.name}-vpce"
  region = var.elastic_region
  type   = "vpce"

  rule {
    source = aws_vpc_endpoint.elastic.id
  }
}

data "ec_stack" "this" {
  version_regex = var.elastic_version_regex
  region        = var.elastic_region
}

resource "ec_deployment" "this" {
  name                   = "${var.name}-search"
  region                 = var.elastic_region
  version                = data.ec_stack.this.version
  deployment_template_id = var.elastic_deployment_template_id
  traffic_filter         = [ec_deployment_traffic_filter.this.id]

  elasticsearch = {
    hot = {
      size        = var.elastic_hot_size
      zone_count  = var.elastic_zone_count
      autoscaling = {}
    }
  }

  kibana = {}

  tags = var.tags
}

# --- Secrets Manager -----------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "features" {
  #checkov:skip=CKV2_AWS_57:rotating the DocumentDB master password needs the AWS-provided rotation Lambda; tracked in docs/deploy.md (rotate by hand until then)
  name                    = "${var.name}/features-uri"
  description             = "RECLOOP_FEATURES_URI: DocumentDB connection string (TLS)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

locals {
  features_uri = format(
    "mongodb://%s:%s@%s:%d/recloop?tls=true&tlsCAFile=%s&replicaSet=rs0&readPreference=secondaryPreferred&retryWrites=false", #checkov:skip=CKV_SECRET_4:a format string with %s placeholders, not a credential
    local.documentdb_user,
    random_password.documentdb.result,
    aws_docdb_cluster.this.endpoint,
    aws_docdb_cluster.this.port,
    local.documentdb_ca_file,
  )
  search_host = "${ec_deployment.this.alias}.es.${var.elastic_privatelink_domain}"
  # recloop's CandidateSource URI; the client reads the credentials from the URL's userinfo.
  candidates_uri = format(
    "elasticsearch+https://%s:%s@%s:443",
    ec_deployment.this.elasticsearch_username,
    ec_deployment.this.elasticsearch_password,
    local.search_host,
  )
}

resource "aws_secretsmanager_secret_version" "features" {
  secret_id     = aws_secretsmanager_secret.features.id
  secret_string = local.features_uri
}

resource "aws_secretsmanager_secret" "candidates" {
  #checkov:skip=CKV2_AWS_57:the elastic user's password is reset through Elastic Cloud (ec_deployment), not by a Secrets Manager rotation Lambda
  name                    = "${var.name}/candidates-uri"
  description             = "RECLOOP_CANDIDATES_URI: Elasticsearch over PrivateLink, with credentials"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "candidates" {
  secret_id     = aws_secretsmanager_secret.candidates.id
  secret_string = local.candidates_uri
}

resource "random_password" "visitor_key" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "visitor_key" {
  #checkov:skip=CKV2_AWS_57:rotating the visitor hash key would split every anonymous visitor's history in two; it is rotated deliberately, by hand
  name                    = "${var.name}/visitor-key"
  description             = "RECLOOP_VISITOR_KEY: key of the anonymous visitor hash (IP + user agent)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "visitor_key" {
  secret_id     = aws_secretsmanager_secret.visitor_key.id
  secret_string = random_password.visitor_key.result
}
