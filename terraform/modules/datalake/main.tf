# The S3 data lake (events, quarantine, catalogs) and the model registry artifacts, in one
# bucket under two prefixes so that IAM can grant each reader exactly its prefix.

data "aws_caller_identity" "current" {}

locals {
  bucket_name     = "${var.name}-lake-${data.aws_caller_identity.current.account_id}"
  log_bucket_name = "${var.name}-lake-logs-${data.aws_caller_identity.current.account_id}"
}

# The lake has its own key so that access to the data can be granted and audited apart from
# logs and topics.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:a key policy's "*" resource is the key itself; statements are scoped by principal
  #checkov:skip=CKV_AWS_111:a key policy's "*" resource is the key itself; statements are scoped by principal
  #checkov:skip=CKV_AWS_356:a key policy's "*" resource is the key itself; statements are scoped by principal
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # why: in a key policy "*" means this key itself; IAM policies still gate who may use it
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: data lake and model registry"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}-lake"
  target_key_id = aws_kms_key.this.key_id
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:cross-region replication is a disaster-recovery cost decision; the lake is versioned and KMS-encrypted, and the replica bucket would be a separate stack
  #checkov:skip=CKV2_AWS_62:no consumer needs object notifications; readers scan partitions by time window
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) by orders of magnitude for many small objects.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "tier-down-and-expire-old-versions"
    status = "Enabled"
    filter {}

    transition {
      days          = var.infrequent_access_after_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.glacier_after_days
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # What a compaction replaced (raw objects it covers, older generations, files of runs that
  # lost a race) is tagged, never deleted by the job: it expires here, after a grace period
  # that lets a reader which planned with the previous manifest finish (recloop.lake.compaction).
  rule {
    id     = "expire-retired-lake-objects"
    status = "Enabled"
    filter {
      and {
        prefix = "${var.lake_prefix}/"
        tags   = { "recloop-lake" = "retired" }
      }
    }
    expiration {
      days = var.compaction_grace_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  # Quarantined records (rejected input with its raw payload) are kept for inspection and
  # replay, not forever: they may hold whatever a client sent.
  rule {
    id     = "expire-quarantine"
    status = "Enabled"
    filter {
      prefix = "${var.lake_prefix}/quarantine/"
    }
    expiration {
      days = var.quarantine_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  # The weblog event source mapping's on-failure destination (modules/ingest) writes batches
  # that exhausted their retries under aws/lambda/, outside the lake prefix, WITH their raw
  # records (client IPs, query strings): kept for on-call to replay, then expired.
  rule {
    id     = "expire-failed-stream-batches"
    status = "Enabled"
    filter {
      prefix = "aws/lambda/"
    }
    expiration {
      days = var.failed_batch_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  bucket        = aws_s3_bucket.this.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/"
}

# Server access logs of the lake. S3 log delivery does not support SSE-KMS targets, hence
# SSE-S3 here; the bucket is private, versioned and TLS-only like the lake.
resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:this is the access-log bucket itself; logging it into itself would loop
  #checkov:skip=CKV_AWS_145:S3 server access log delivery requires SSE-S3 on the target bucket
  #checkov:skip=CKV_AWS_144:access logs are not replicated cross-region; they expire by lifecycle
  #checkov:skip=CKV2_AWS_62:no consumer needs notifications for access-log objects
  bucket        = local.log_bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "S3ServerAccessLogsDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/s3-access/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.logs.arn,
      "${aws_s3_bucket.logs.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json

  depends_on = [aws_s3_bucket_public_access_block.logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}

    expiration {
      days = var.log_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- Glue catalog and Athena: the lake as recloop's readers see it ------------------------------
#
# Three tables over the three kinds of objects, and one view over them (events_view.sql):
#   events_raw        every raw object ingest wrote (replaced ones too, until they expire)
#   events_compacted  every compacted file (of runs that lost or crashed too)
#   lake_manifests    the markers and sources files that say which of them a reader reads
#   events (view)     each event of an hour once, as Lake.read_events reads it
# Query the view; the tables alone double-count an hour while it is being compacted.

resource "aws_glue_catalog_database" "this" {
  name        = replace("${var.name}_lake", "-", "_")
  description = "recloop data lake (${var.name}); query the events view"
}

locals {
  lake_location = "s3://${aws_s3_bucket.this.id}/${var.lake_prefix}"
  # A compaction unit is an hour (00..23) or, for an old day rolled up, the whole day.
  unit_values = join(",", concat([for h in range(24) : format("%02d", h)], ["day"]))
}

resource "aws_glue_catalog_table" "events" {
  name          = "events_raw"
  database_name = aws_glue_catalog_database.this.name
  description   = "Raw event objects, one per ingest batch and hour (recloop.events.EVENT_SCHEMA); read through the events view."
  table_type    = "EXTERNAL_TABLE"

  # Partition projection computes partitions from the key layout: new hours are queryable at
  # once, without a crawler or MSCK REPAIR.
  parameters = {
    "projection.enabled"          = "true"
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.event_projection_start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "classification"              = "parquet"
    "EXTERNAL"                    = "TRUE"
    "projection.hour.type"        = "integer"
    "projection.hour.range"       = "0,23"
    "projection.hour.digits"      = "2"
    "storage.location.template"   = "${local.lake_location}/events/dt=$${dt}/hour=$${hour}/"
  }

  partition_keys {
    name = "dt"
    type = "string"
  }
  partition_keys {
    name = "hour"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_location}/events/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = local.event_columns
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

resource "aws_glue_catalog_table" "compacted" {
  name          = "events_compacted"
  database_name = aws_glue_catalog_database.this.name
  description   = "Compacted event files, by hour or rolled-up day (hour = 'day'); read through the events view."
  table_type    = "EXTERNAL_TABLE"

  # Partition projection computes partitions from the key layout: new hours are queryable at
  # once, without a crawler or MSCK REPAIR.
  parameters = {
    "projection.enabled"          = "true"
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.event_projection_start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "classification"              = "parquet"
    "EXTERNAL"                    = "TRUE"
    "projection.hour.type"        = "enum"
    "projection.hour.values"      = local.unit_values
    "storage.location.template"   = "${local.lake_location}/compacted/dt=$${dt}/hour=$${hour}/"
  }

  partition_keys {
    name = "dt"
    type = "string"
  }
  partition_keys {
    name = "hour"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_location}/compacted/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = local.event_columns
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

# Markers and sources files are JSON lines of one shape (recloop.lake.manifest.ManifestLine);
# the "_g<gen>.retired" records start with "_", which Athena skips as hidden files.
resource "aws_glue_catalog_table" "manifests" {
  name          = "lake_manifests"
  database_name = aws_glue_catalog_database.this.name
  description   = "Compaction markers and sources files: which objects the events view reads."
  table_type    = "EXTERNAL_TABLE"

  # Partition projection computes partitions from the key layout: new hours are queryable at
  # once, without a crawler or MSCK REPAIR.
  parameters = {
    "projection.enabled"          = "true"
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.event_projection_start},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "classification"              = "json"
    "EXTERNAL"                    = "TRUE"
    "projection.hour.type"        = "enum"
    "projection.hour.values"      = local.unit_values
    "storage.location.template"   = "${local.lake_location}/manifests/dt=$${dt}/hour=$${hour}/"
  }

  partition_keys {
    name = "dt"
    type = "string"
  }
  partition_keys {
    name = "hour"
    type = "string"
  }

  storage_descriptor {
    location      = "${local.lake_location}/manifests/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
    }

    dynamic "columns" {
      for_each = [
        ["generation", "int"],
        ["token", "string"],
        ["kind", "string"],
        ["key", "string"],
        ["rows", "bigint"],
        ["bytes", "bigint"],
        ["sha256", "string"],
      ]
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}

# Run once per environment (and after a schema change) in the Athena console or with
# `aws athena start-query-execution --query-string "$(terraform output -raw events_view_sql)"`:
# Terraform cannot create an Athena view itself without hand-encoding Presto's view format.
resource "aws_athena_named_query" "events_view" {
  name        = "${var.name}-create-events-view"
  description = "CREATE OR REPLACE VIEW events: the lake as recloop's readers see it"
  database    = aws_glue_catalog_database.this.name
  query       = local.events_view_sql
}

locals {
  events_view_sql = templatefile("${path.module}/events_view.sql", {
    root    = local.lake_location
    columns = join(", ", [for c in local.event_columns : "\"${c[0]}\""])
  })
}

locals {
  # Mirrors recloop.events.EVENT_SCHEMA; tests/infra checks that the two agree.
  event_columns = [
    ["event_id", "string"],
    ["event_type", "string"],
    ["timestamp", "timestamp"],
    ["user_id", "string"],
    ["visitor_id", "string"],
    ["item_id", "string"],
    ["item_ids", "array<string>"],
    ["positions", "array<int>"],
    ["session_id", "string"],
    ["rec_id", "string"],
    ["model_version", "string"],
    ["page", "string"],
    ["referrer", "string"],
    ["device", "string"],
    ["source", "string"],
    ["schema_version", "smallint"],
  ]
}
