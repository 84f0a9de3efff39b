"""Structure of terraform/: what `terraform validate` and a reviewer would check.

No Terraform binary can run here, so these tests parse every .tf file with python-hcl2 and
assert the contract of each module: typed and described variables, described outputs, pinned
providers configured only in envs/, module wiring that resolves, and the operational settings
the issue states (alarms, throttling, blue/green, rollback, caching, encryption).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tfparse
from hclfmt import format_hcl
from tfparse import ENVS, MODULES, REPO, first, load, module_dirs, resolve, tf_files

ROOTS = [*module_dirs(), *sorted(p for p in ENVS.iterdir() if p.is_dir())]
ENV_NAMES = ["dev", "prod"]


def _id(path: Path) -> str:
    return str(path.relative_to(REPO / "terraform"))


def _env_args(env: str, module: str) -> dict[str, Any]:
    return load(ENVS / env).labelled("module")[module]


def _expressions(value: Any) -> str:
    return json.dumps(value)


# --- every file -----------------------------------------------------------------------------------


def test_the_expected_components_exist() -> None:
    names = {p.name for p in module_dirs()}
    assert {"datalake", "ingest", "training", "serving", "stores", "monitoring"} <= names
    assert {p.name for p in ENVS.iterdir() if p.is_dir()} == set(ENV_NAMES)
    for root in ROOTS:
        for part in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (root / part).is_file(), f"{_id(root)} lacks {part}"


@pytest.mark.parametrize("path", tf_files(), ids=_id)
def test_every_file_is_formatted_like_terraform_fmt(path: Path) -> None:
    text = path.read_text()
    assert format_hcl(text) == text, f"run: python tests/infra/hclfmt.py --write {_id(path)}"


def test_the_fmt_check_realigns_and_reindents_like_terraform_fmt() -> None:
    messy = (
        'resource "x" "y" {\n    a = 1\n  long_name = "${var.a ? "b" : ""}"\n  tags = {\n'
        '  k = "v" # why\n  }\n}\n'
    )
    assert format_hcl(messy) == (
        'resource "x" "y" {\n  a         = 1\n  long_name = "${var.a ? "b" : ""}"\n'
        '  tags = {\n    k = "v" # why\n  }\n}\n'
    )


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_every_variable_is_typed_and_described(root: Path) -> None:
    variables = load(root).labelled("variable")
    assert variables, f"{_id(root)} declares no variables"
    for name, body in variables.items():
        assert body.get("type"), f"{_id(root)}: variable {name} has no type"
        assert len(str(body.get("description", ""))) >= 10, f"{_id(root)}: {name} undescribed"


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_every_output_is_described(root: Path) -> None:
    outputs = load(root).labelled("output")
    assert outputs, f"{_id(root)} declares no outputs"
    for name, body in outputs.items():
        assert len(str(body.get("description", ""))) >= 10, f"{_id(root)}: output {name}"


def _bounded(constraint: str) -> bool:
    """A version constraint with an upper bound: ~> x.y, or an explicit < bound."""
    return constraint.strip().startswith("~>") or "<" in constraint


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_versions_tf_pins_terraform_and_every_provider_used(root: Path) -> None:
    config = load(root)
    terraform = first(config.files["versions.tf"]["terraform"])
    assert _bounded(terraform["required_version"])
    required: dict[str, Any] = {}
    for block in terraform["required_providers"]:
        required.update(block)
    for name, spec in required.items():
        assert "/" in spec["source"], f"{_id(root)}: provider {name} has no source"
        assert _bounded(spec["version"]), f"{_id(root)}: provider {name} is not pinned"
    # Every other file declares no terraform block: versions.tf is the one place.
    for file, parsed in config.files.items():
        if file != "versions.tf":
            assert "terraform" not in parsed, f"{_id(root)}/{file} has a terraform block"
    used = {
        rtype.split("_")[0]
        for kind in ("resource", "data")
        for rtype, _, _ in config.all_resources(kind)
    }
    if root.parent == ENVS:
        used |= {"aws", "ec", "random"}  # the modules' providers are installed by the root
    assert used <= set(required), f"{_id(root)}: providers used but not pinned"


@pytest.mark.parametrize("root", module_dirs(), ids=_id)
def test_modules_do_not_configure_providers(root: Path) -> None:
    assert not list(load(root).blocks("provider")), f"{_id(root)} configures a provider"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_envs_configure_providers_and_a_remote_state(env: str) -> None:
    config = load(ENVS / env)
    providers = [
        (name, body) for _, entry in config.blocks("provider") for name, body in entry.items()
    ]
    aws = [body for name, body in providers if name == "aws"]
    assert any("alias" not in body for body in aws)
    assert any(body.get("alias") == "us_east_1" and body["region"] == "us-east-1" for body in aws)
    assert any(name == "ec" for name, _ in providers)
    backend = first(first(config.files["versions.tf"]["terraform"])["backend"])
    s3 = backend["s3"]
    assert s3["encrypt"] is True and s3["use_lockfile"] is True
    assert s3["key"] == f"recloop/{env}.tfstate"


# --- wiring: what `terraform validate` would reject -----------------------------------------------

_META_ARGS = {"source", "providers", "depends_on", "count", "for_each", "version"}


@pytest.mark.parametrize("env", ENV_NAMES)
def test_module_calls_match_the_modules_variables(env: str) -> None:
    for name, call in load(ENVS / env).labelled("module").items():
        source = (ENVS / env / call["source"]).resolve()
        assert source.is_dir(), f"{env}: module {name} source {call['source']} is missing"
        variables = load(source).labelled("variable")
        passed = set(call) - _META_ARGS
        assert passed <= set(variables), f"{env}.{name}: unknown {passed - set(variables)}"
        required = {v for v, body in variables.items() if "default" not in body}
        assert required <= passed, f"{env}.{name}: missing {required - passed}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_module_outputs_referenced_by_envs_exist(env: str) -> None:
    config = load(ENVS / env)
    calls = config.labelled("module")
    refs = re.findall(r"module\.(\w+)\.(\w+)", _expressions(config.files))
    assert refs
    for module, output in refs:
        assert module in calls, f"{env}: module.{module} is not called"
        source = (ENVS / env / calls[module]["source"]).resolve()
        assert output in load(source).labelled("output"), f"{env}: module.{module}.{output}"


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_every_reference_is_declared(root: Path) -> None:
    config = load(root)
    body = _expressions(config.files)
    variables = config.labelled("variable")
    for name in set(re.findall(r"\bvar\.(\w+)", body)):
        assert name in variables, f"{_id(root)}: var.{name} is not declared"
    local_names = set(config.locals())
    for name in set(re.findall(r"\blocal\.(\w+)", body)):
        assert name in local_names, f"{_id(root)}: local.{name} is not defined"
    resources = {(t, n) for t, n, _ in config.all_resources()}
    data = {(t, n) for t, n, _ in config.all_resources("data")}
    for dtype, name in set(re.findall(r"\bdata\.((?:aws|ec|random)_\w+)\.(\w+)", body)):
        assert (dtype, name) in data, f"{_id(root)}: data.{dtype}.{name} is not declared"
    for rtype, name in set(re.findall(r"(?<![.\w])((?:aws|ec|random)_\w+)\.(\w+)", body)):
        if rtype.startswith("aws_") and name in {"us_east_1"}:
            continue  # the provider alias aws.us_east_1 is not a resource
        assert (rtype, name) in resources, f"{_id(root)}: {rtype}.{name} is not declared"


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_nothing_is_declared_and_left_unused(root: Path) -> None:
    """What tflint's terraform_unused_declarations reports: dead variables, locals, data."""
    config = load(root)
    outside_variables = _expressions(
        {name: parsed for name, parsed in config.files.items() if name != "variables.tf"}
    )
    everything = _expressions(config.files)
    unused = set(config.labelled("variable")) - set(re.findall(r"\bvar\.(\w+)", outside_variables))
    assert not unused, f"{_id(root)}: unused variables {sorted(unused)}"
    dead_locals = set(config.locals()) - set(re.findall(r"\blocal\.(\w+)", everything))
    assert not dead_locals, f"{_id(root)}: unused locals {sorted(dead_locals)}"
    data = {(t, n) for t, n, _ in config.all_resources("data")}
    dead_data = data - set(re.findall(r"\bdata\.(\w+)\.(\w+)", everything))
    assert not dead_data, f"{_id(root)}: unused data sources {sorted(dead_data)}"


def test_terraform_env_vars_are_real_settings_fields() -> None:
    """Every RECLOOP_* variable Terraform sets names a field of recloop.config.Settings."""
    from recloop.config import Settings

    names: set[str] = set()
    for root in module_dirs():
        names |= set(re.findall(r"\bRECLOOP_([A-Z0-9_]+)\b", load(root).text()))
    assert names
    # RECLOOP_<FIELD>_SECRET_ARN gives a field by Secrets Manager reference (config_secrets).
    fields = {n.removesuffix("_SECRET_ARN") for n in names}
    unknown = {n for n in fields if n.lower() not in Settings.model_fields}
    assert not unknown, f"Terraform sets RECLOOP_ variables Settings does not read: {unknown}"


# --- ingest ---------------------------------------------------------------------------------------


def test_the_weblog_stream_is_on_demand_and_encrypted() -> None:
    stream = load(MODULES / "ingest").resources("aws_kinesis_stream")["this"]
    assert first(stream["stream_mode_details"])["stream_mode"] == "ON_DEMAND"
    assert stream["encryption_type"] == "KMS"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_event_source_mapping_reports_partial_failures_with_bounded_retries(env: str) -> None:
    config = load(MODULES / "ingest")
    variables = config.labelled("variable")
    args = _env_args(env, "ingest")
    mapping = config.resources("aws_lambda_event_source_mapping")["this"]
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["bisect_batch_on_function_error"] is True
    retries = resolve(mapping["maximum_retry_attempts"], variables, args)
    age = resolve(mapping["maximum_record_age_in_seconds"], variables, args)
    assert 0 <= retries <= 10, retries
    assert 60 <= age <= 604800, age
    on_failure = first(first(mapping["destination_config"])["on_failure"])
    assert on_failure["destination_arn"] == "${var.lake_bucket_arn}"  # S3 on-failure destination
    assert mapping["function_name"] == "${aws_lambda_function.this.arn}"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_no_weblogs_alarm(env: str) -> None:
    config = load(MODULES / "ingest")
    variables = config.labelled("variable")
    alarm = config.resources("aws_cloudwatch_metric_alarm")["no_weblogs"]
    args = _env_args(env, "ingest")
    assert alarm["metric_name"] == "EventsWritten"
    assert alarm["statistic"] == "Sum"
    assert alarm["comparison_operator"] == "LessThanThreshold"
    assert alarm["threshold"] == 1
    assert alarm["treat_missing_data"] == "breaching"
    assert resolve(alarm["evaluation_periods"], variables, args) == 3
    assert resolve(alarm["period"], variables, args) == 300
    assert resolve(alarm["namespace"], variables, args) == "recloop"
    assert alarm["alarm_actions"] == ["${var.alarm_topic_arn}"]
    # The alarm watches the series the handler emits: service dimension = its SERVICE name.
    handler = (REPO / "lambdas" / "weblog_processor" / "handler.py").read_text()
    service = re.search(r'^SERVICE = "(\w+)"', handler, re.M)
    assert service is not None and alarm["dimensions"] == {"service": service.group(1)}
    assert 'name="EventsWritten"' in handler


def test_the_alarm_topic_has_an_email_subscription() -> None:
    config = load(MODULES / "platform")
    subscription = config.resources("aws_sns_topic_subscription")["email"]
    assert subscription["protocol"] == "email"
    assert config.resources("aws_sns_topic")["alarms"]["kms_master_key_id"]


# --- data lake ------------------------------------------------------------------------------------


def test_lake_bucket_is_versioned_encrypted_private_tls_only_and_tiered() -> None:
    config = load(MODULES / "datalake")
    versioning = config.resources("aws_s3_bucket_versioning")["this"]
    assert first(versioning["versioning_configuration"])["status"] == "Enabled"
    sse = config.resources("aws_s3_bucket_server_side_encryption_configuration")["this"]
    default = first(first(sse["rule"])["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.this.arn}"
    block = config.resources("aws_s3_bucket_public_access_block")["this"]
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True
    policy = config.resources("aws_iam_policy_document", "data")["tls_only"]
    statement = first(policy["statement"])
    assert statement["effect"] == "Deny"
    condition = first(statement["condition"])
    assert (condition["variable"], condition["values"]) == ("aws:SecureTransport", ["false"])
    rules = config.resources("aws_s3_bucket_lifecycle_configuration")["this"]["rule"]
    by_id = {rule["id"]: rule for rule in rules}
    lifecycle = by_id["tier-down-and-expire-old-versions"]
    classes = [t["storage_class"] for t in lifecycle["transition"]]
    assert classes == ["STANDARD_IA", "GLACIER_IR"]
    assert lifecycle["noncurrent_version_expiration"]


def test_compaction_replaced_objects_and_the_quarantine_expire_by_lifecycle() -> None:
    from recloop.lake.store import RETIRED_TAG

    config = load(MODULES / "datalake")
    rules = config.resources("aws_s3_bucket_lifecycle_configuration")["this"]["rule"]
    by_id = {rule["id"]: rule for rule in rules}
    retired = by_id["expire-retired-lake-objects"]
    match = first(first(retired["filter"])["and"])
    # The tag the compaction writes (S3Store.retire) is the tag the rule expires.
    assert match["tags"] == {RETIRED_TAG["Key"]: RETIRED_TAG["Value"]}
    assert match["prefix"] == "${var.lake_prefix}/"
    assert first(retired["expiration"])["days"] == "${var.compaction_grace_days}"
    quarantine = by_id["expire-quarantine"]
    assert first(quarantine["filter"])["prefix"] == "${var.lake_prefix}/quarantine/"
    assert first(quarantine["expiration"])["days"] == "${var.quarantine_retention_days}"


def test_the_streams_failed_batches_expire_where_lambda_writes_them() -> None:
    # The on-failure destination writes raw records (IPs, query strings) under the prefix the
    # ingest role may write; the lake bucket must expire exactly that prefix.
    ingest = load(MODULES / "ingest").resources("aws_iam_policy_document", "data")["this"]
    [written] = [s for s in ingest["statement"] if s.get("sid") == "OnFailureDestination"]
    [resource] = written["resources"]
    prefix = resource.split("}/", 1)[1].removesuffix("*")
    rules = load(MODULES / "datalake").resources("aws_s3_bucket_lifecycle_configuration")["this"]
    by_id = {rule["id"]: rule for rule in rules["rule"]}
    failed = by_id["expire-failed-stream-batches"]
    assert first(failed["filter"])["prefix"] == prefix == "aws/lambda/"
    assert first(failed["expiration"])["days"] == "${var.failed_batch_retention_days}"


_GLUE_TYPES = {
    "string": "string",
    "timestamp[ms, tz=UTC]": "timestamp",
    "int16": "smallint",
    "int32": "int",
    "list<item: string>": "array<string>",
    "list<item: int32>": "array<int>",
}


def test_glue_events_table_matches_the_event_schema_and_partitions() -> None:
    from recloop.events import EVENT_SCHEMA

    config = load(MODULES / "datalake")
    table = config.resources("aws_glue_catalog_table")["events"]
    assert [k["name"] for k in table["partition_keys"]] == ["dt", "hour"]
    expected = [[f.name, _GLUE_TYPES[str(f.type)]] for f in EVENT_SCHEMA]
    assert config.locals()["event_columns"] == expected
    params = table["parameters"]
    assert params["projection.enabled"] == "true"
    # "$${dt}" is HCL's escape: Terraform writes "${dt}", Athena's projection placeholder.
    assert params["storage.location.template"].endswith("/events/dt=$${dt}/hour=$${hour}/")
    serde = first(first(table["storage_descriptor"])["ser_de_info"])
    assert "parquet" in serde["serialization_library"].lower()


def test_glue_tables_follow_the_lake_layout_the_view_reads() -> None:
    """The compacted and manifest tables sit where recloop.lake.layout writes, with the
    compaction units (00..23 and "day") as their hour partitions."""
    from recloop.lake import layout

    config = load(MODULES / "datalake")
    tables = config.resources("aws_glue_catalog_table")
    assert tables["events"]["name"] == "events_raw"
    day = layout.unit(datetime(2024, 3, 1, 5, tzinfo=UTC), day=True)
    assert layout.compacted_prefix(day) == "compacted/dt=2024-03-01/hour=day/"
    assert "range(24)" in config.locals()["unit_values"] and "day" in config.locals()["unit_values"]
    for name, top in (("compacted", "compacted"), ("manifests", "manifests")):
        params = tables[name]["parameters"]
        assert params["projection.hour.type"] == "enum"
        assert params["projection.hour.values"] == "${local.unit_values}"
        template = params["storage.location.template"]
        assert template.endswith(f"/{top}/dt=$${{dt}}/hour=$${{hour}}/")
    view = (MODULES / "datalake" / "events_view.sql").read_text()
    assert "lake_manifests" in view and "events_compacted" in view and "events_raw" in view


# --- serving --------------------------------------------------------------------------------------


def test_service_uses_codedeploy_blue_green_with_automatic_rollback_on_alarms() -> None:
    config = load(MODULES / "serving")
    service = config.resources("aws_ecs_service")["this"]
    assert first(service["deployment_controller"])["type"] == "CODE_DEPLOY"
    assert first(service["network_configuration"])["assign_public_ip"] is False
    group = config.resources("aws_codedeploy_deployment_group")["this"]
    style = first(group["deployment_style"])
    assert style == {"deployment_option": "WITH_TRAFFIC_CONTROL", "deployment_type": "BLUE_GREEN"}
    rollback = first(group["auto_rollback_configuration"])
    assert rollback["enabled"] is True
    assert set(rollback["events"]) == {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"}
    alarms = first(group["alarm_configuration"])
    assert alarms["enabled"] is True
    assert set(alarms["alarms"]) == {
        "${aws_cloudwatch_metric_alarm.deploy_5xx.alarm_name}",
        "${aws_cloudwatch_metric_alarm.deploy_latency.alarm_name}",
    }
    pair = first(first(group["load_balancer_info"])["target_group_pair_info"])
    assert len(pair["target_group"]) == 2
    assert first(pair["prod_traffic_route"])["listener_arns"] == ["${aws_lb_listener.prod.arn}"]
    assert first(pair["test_traffic_route"])["listener_arns"] == ["${aws_lb_listener.test.arn}"]
    bg = first(group["blue_green_deployment_config"])
    assert first(bg["terminate_blue_instances_on_deployment_success"])["action"] == "TERMINATE"
    assert set(config.resources("aws_lb_listener")) == {"prod", "test"}
    assert (
        config.resources("aws_lb_target_group")["this"]["for_each"] == '${toset(["blue", "green"])}'
    )


def test_prod_shifts_traffic_gradually_and_keeps_blue_for_rollback() -> None:
    args = _env_args("prod", "serving")
    assert "Linear" in args["deployment_config_name"] or "Canary" in args["deployment_config_name"]
    assert args["blue_termination_wait_minutes"] >= 15
    assert args["min_count"] >= 2


def test_autoscaling_tracks_cpu() -> None:
    config = load(MODULES / "serving")
    policy = config.resources("aws_appautoscaling_policy")["cpu"]
    assert policy["policy_type"] == "TargetTrackingScaling"
    spec = first(
        first(policy["target_tracking_scaling_policy_configuration"])[
            "predefined_metric_specification"
        ]
    )
    assert spec["predefined_metric_type"] == "ECSServiceAverageCPUUtilization"


def test_task_is_read_only_non_root_with_awslogs_and_worker_count_from_env() -> None:
    text = (MODULES / "serving" / "main.tf").read_text()
    task = text[text.index('resource "aws_ecs_task_definition" "this"') :]
    task = task[: task.index("\nresource ")]
    assert re.search(r"readonlyRootFilesystem\s*=\s*true", task)
    assert re.search(r'user\s*=\s*"10001:10001"', task)
    assert re.search(r'logDriver\s*=\s*"awslogs"', task)
    assert re.search(r'name = "WEB_CONCURRENCY", value = tostring\(var\.web_concurrency\)', task)
    assert "containerPort = local.container_port" in task


@pytest.mark.parametrize("env", ENV_NAMES)
def test_api_stage_throttles_and_routes_require_jwt(env: str) -> None:
    config = load(MODULES / "serving")
    variables = config.labelled("variable")
    args = _env_args(env, "serving")
    stage = config.resources("aws_apigatewayv2_stage")["this"]
    settings = first(stage["default_route_settings"])
    rate = resolve(settings["throttling_rate_limit"], variables, args)
    burst = resolve(settings["throttling_burst_limit"], variables, args)
    assert isinstance(rate, int) and rate > 0
    assert isinstance(burst, int) and burst >= rate
    authorizer = config.resources("aws_apigatewayv2_authorizer")["jwt"]
    assert authorizer["authorizer_type"] == "JWT"
    assert first(authorizer["jwt_configuration"])["issuer"].startswith("https://cognito-idp.")
    routes = config.resources("aws_apigatewayv2_route")
    open_routes = {r["route_key"] for r in routes.values() if r["authorization_type"] == "NONE"}
    assert open_routes == {"GET /healthz"}
    assert routes["proxy"]["authorization_type"] == "JWT"


def test_prod_allows_more_traffic_than_dev() -> None:
    dev, prod = _env_args("dev", "serving"), _env_args("prod", "serving")
    assert prod["throttling_rate_limit"] > dev["throttling_rate_limit"]


def test_cloudfront_never_caches_and_sits_behind_waf() -> None:
    config = load(MODULES / "serving")
    policy = config.resources("aws_cloudfront_cache_policy")["no_cache"]
    assert (policy["min_ttl"], policy["default_ttl"], policy["max_ttl"]) == (0, 0, 0)
    distribution = config.resources("aws_cloudfront_distribution")["this"]
    behaviours = [first(distribution["default_cache_behavior"])]
    behaviours += distribution.get("ordered_cache_behavior", [])
    for behaviour in behaviours:
        assert behaviour["cache_policy_id"] == "${aws_cloudfront_cache_policy.no_cache.id}"
        assert behaviour["viewer_protocol_policy"] == "redirect-to-https"
    origin_policy = config.resources("aws_cloudfront_origin_request_policy", "data")
    assert origin_policy["all_viewer_except_host"]["name"] == "Managed-AllViewerExceptHostHeader"
    assert distribution["web_acl_id"] == "${aws_wafv2_web_acl.this.arn}"
    acl = config.resources("aws_wafv2_web_acl")["this"]
    assert acl["scope"] == "CLOUDFRONT" and acl["provider"] == "${aws.us_east_1}"


# --- stores ---------------------------------------------------------------------------------------


def test_documentdb_requires_tls_is_encrypted_and_backed_up() -> None:
    config = load(MODULES / "stores")
    params = config.resources("aws_docdb_cluster_parameter_group")["this"]["parameter"]
    assert {"name": "tls", "value": "enabled"} in params
    cluster = config.resources("aws_docdb_cluster")["this"]
    assert cluster["storage_encrypted"] is True and cluster["kms_key_id"]
    assert cluster["skip_final_snapshot"] is False
    assert _env_args("prod", "stores")["documentdb_backup_retention_days"] >= 7


def test_elasticsearch_is_elastic_cloud_reachable_only_over_privatelink() -> None:
    config = load(MODULES / "stores")
    flt = config.resources("ec_deployment_traffic_filter")["this"]
    assert flt["type"] == "vpce"
    assert first(flt["rule"])["source"] == "${aws_vpc_endpoint.elastic.id}"
    deployment = config.resources("ec_deployment")["this"]
    assert deployment["traffic_filter"] == ["${ec_deployment_traffic_filter.this.id}"]
    # The elasticsearch 8/9 client refuses AWS OpenSearch: the stack must be Elastic's.
    assert not any(
        t.startswith(("aws_opensearch", "aws_elasticsearch")) for t, _, _ in config.all_resources()
    )


def test_secrets_are_in_secrets_manager_with_the_kms_key() -> None:
    secrets = load(MODULES / "stores").resources("aws_secretsmanager_secret")
    assert {"features", "candidates", "visitor_key"} <= set(secrets)
    for body in secrets.values():
        assert body["kms_key_id"] == "${var.kms_key_arn}"


# --- training and the loop -----------------------------------------------------------------------


def test_sagemaker_role_reaches_only_the_lake_and_registry_prefixes() -> None:
    config = load(MODULES / "training")
    policy = config.resources("aws_iam_policy_document", "data")["sagemaker"]
    for statement in policy["statement"]:
        for resource in statement["resources"]:
            if "lake_bucket_arn}/" in resource:
                assert re.search(r"\$\{var\.(lake|registry)_prefix\}/\*$", resource), resource
        if "s3:PutObject" in statement["actions"]:
            assert statement["resources"] == ["${var.lake_bucket_arn}/${var.registry_prefix}/*"]


def _allows(policy: dict[str, Any], action: str, arn: str, variables: dict[str, str]) -> bool:
    """Does an Allow statement of `policy` grant `action` on `arn` (IAM's * wildcard)?"""
    import fnmatch

    for statement in policy["statement"]:
        if action not in statement["actions"]:
            continue
        for resource in statement["resources"]:
            for name, value in variables.items():
                resource = resource.replace(f"${{var.{name}}}", value)
            if fnmatch.fnmatchcase(arn, resource):
                return True
    return False


def test_the_training_channel_is_readable_by_the_job_and_writable_by_the_launcher() -> None:
    """What the launcher writes and SageMaker copies (recloop.training.channel) is what the
    training module's roles grant: the issue-13 finding was a lake prefix without its "/"."""
    from recloop.training.channel import manifest_body

    config = load(MODULES / "training")
    documents = config.resources("aws_iam_policy_document", "data")
    variables = {
        "lake_bucket_arn": "arn:aws:s3:::recloop-lake",
        "lake_prefix": config.labelled("variable").get("lake_prefix", {}).get("default") or "lake",
        "registry_prefix": "registry",
    }
    lake = variables["lake_prefix"]
    body = json.loads(manifest_body(f"s3://recloop-lake/{lake}", ["events/dt=2026-01-05/x"]))
    prefix = body[0]["prefix"]
    assert prefix == f"s3://recloop-lake/{lake}/"
    objects = [prefix + key for key in body[1:]]
    # RECLOOP_SAGEMAKER_OUTPUT_URI is <registry artifacts>/jobs: the manifest goes under it.
    output = config.locals()["loop_environment"]["RECLOOP_SAGEMAKER_OUTPUT_URI"]
    assert output == "${var.registry_artifacts_uri}/jobs"
    manifest = "arn:aws:s3:::recloop-lake/registry/jobs/channels/recloop-train-abc.manifest"
    arn = [uri.replace("s3://", "arn:aws:s3:::") for uri in objects]
    assert all(_allows(documents["sagemaker"], "s3:GetObject", a, variables) for a in arn)
    assert _allows(documents["sagemaker"], "s3:GetObject", manifest, variables)
    assert _allows(documents["monitor"], "s3:PutObject", manifest, variables)


def test_eventbridge_runs_the_monitor_on_a_schedule_and_promote_on_training_state() -> None:
    config = load(MODULES / "training")
    rules = config.resources("aws_cloudwatch_event_rule")
    assert rules["monitor_schedule"]["schedule_expression"] == "${var.monitor_schedule}"
    pattern_expr = rules["training_state_change"]["event_pattern"]
    assert '"SageMaker Training Job State Change"' in pattern_expr
    assert '"aws.sagemaker"' in pattern_expr
    targets = config.resources("aws_cloudwatch_event_target")
    assert targets["monitor_schedule"]["arn"] == "${aws_lambda_function.monitor.arn}"
    assert targets["training_state_change"]["arn"] == "${aws_lambda_function.promote.arn}"
    assert config.resources("aws_sagemaker_model_package_group")["this"]


def test_training_job_prefix_is_the_one_recloops_launcher_uses() -> None:
    """IAM and the state-change rule match the names recloop.training.sagemaker gives jobs."""
    import dataclasses

    from recloop.training.sagemaker import LaunchConfig

    default = next(f.default for f in dataclasses.fields(LaunchConfig) if f.name == "base_job_name")
    config = load(MODULES / "training")
    assert config.locals()["training_job_prefix"] == default
    rule = config.resources("aws_cloudwatch_event_rule")["training_state_change"]
    assert "prefix = local.training_job_prefix" in rule["event_pattern"]


# --- monitoring -----------------------------------------------------------------------------------


def test_dashboard_shows_what_on_call_needs() -> None:
    text = (MODULES / "monitoring" / "main.tf").read_text()
    titles = set(re.findall(r'title\s*=\s*"([^"]+)"', text))
    assert {
        "Requests",
        "Latency p50 / p99 (s)",
        "Errors",
        "Events ingested",
        "Ingest lag (s)",
        "CTR per model version",
        "Alarms",
    } <= titles
    for metric in ("EventsWritten", "IngestLagSeconds", "TargetResponseTime", "RequestCount"):
        assert metric in text


def test_service_alarms_exist_and_notify_on_call() -> None:
    from recloop.monitoring.detectors import ENGAGEMENT_DROP

    config = load(MODULES / "monitoring")
    alarms = config.resources("aws_cloudwatch_metric_alarm")
    assert {"error_rate", "p99_latency", "ctr_drop"} <= set(alarms)
    for alarm in alarms.values():
        assert "${var.alarm_topic_arn}" in alarm["alarm_actions"]
    assert alarms["p99_latency"]["extended_statistic"] == "p99"
    assert alarms["ctr_drop"]["dimensions"] == {"service": "monitor", "detector": ENGAGEMENT_DROP}
    rate = next(q for q in alarms["error_rate"]["metric_query"] if q["id"] == "rate")
    assert "errors / requests" in rate["expression"]


def _alarm_descriptions() -> list[tuple[str, str]]:
    out = []
    for root in module_dirs():
        for name, body in load(root).resources("aws_cloudwatch_metric_alarm").items():
            out.append((f"{root.name}.{name}", body["alarm_description"]))
    return out


@pytest.mark.parametrize(
    ("alarm", "description"), _alarm_descriptions(), ids=[a for a, _ in _alarm_descriptions()]
)
def test_every_alarm_links_a_runbook_section_that_exists(alarm: str, description: str) -> None:
    match = re.search(r"Runbook: docs/deploy\.md#([a-z0-9-]+)", description)
    assert match, f"{alarm}: alarm_description has no runbook link"
    doc = (REPO / "docs" / "deploy.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", doc, re.M)
    }
    assert match.group(1) in anchors, f"{alarm}: docs/deploy.md has no section #{match.group(1)}"


# --- IAM and checkov hygiene ----------------------------------------------------------------------

_WILDCARD_LINE = re.compile(r'^\s*(actions|resources)\s*=\s*\[[^\]]*"\*"[^\]]*\]')


@pytest.mark.parametrize("path", tf_files(), ids=_id)
def test_iam_wildcards_carry_a_reason(path: Path) -> None:
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        if _WILDCARD_LINE.match(line):
            here = line.split("#", 1)[1] if "#" in line else ""
            above = lines[number - 1].strip() if number else ""
            reason = here or (above[1:] if above.startswith("#") else "")
            assert "why" in reason.lower() and len(reason.split()) >= 5, (
                f"{_id(path)}:{number + 1}: a '*' in an IAM statement needs a '# why: ...'"
            )


@pytest.mark.parametrize("root", ROOTS, ids=_id)
def test_the_text_scan_sees_every_wildcard_statement(root: Path) -> None:
    """The line scan above must not miss a wildcard written across several lines."""
    config = load(root)
    parsed = 0
    for body in config.resources("aws_iam_policy_document", "data").values():
        for statement in body.get("statement", []):
            if statement.get("effect", "Allow") == "Allow" and (
                "*" in statement.get("actions", []) or "*" in statement.get("resources", [])
            ):
                parsed += 1
    scanned = sum(1 for line in config.text().splitlines() if _WILDCARD_LINE.match(line))
    assert scanned == parsed
    assert '"Action": "*"' not in config.text() and '"Resource": "*"' not in config.text()


_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


@pytest.mark.parametrize("path", tf_files(), ids=_id)
def test_every_checkov_skip_is_justified(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _SKIP.search(line)
        if match:
            reason = (match.group(2) or "").strip()
            assert len(reason.split()) >= 5, f"{_id(path)}:{number}: skip {match.group(1)}"


def test_lambda_sources_are_tagged() -> None:
    """Each function names its source folder, so the handler test can find and import it."""
    found = tfparse_lambda_sources()
    assert set(found) == {
        "lambdas/weblog_processor",
        "lambdas/monitor",
        "lambdas/promote",
        "lambdas/compact",
    }


def tfparse_lambda_sources() -> dict[str, str]:
    out = {}
    for root in module_dirs():
        for name, body in load(root).resources("aws_lambda_function").items():
            tags = body["tags"]
            match = (
                re.search(r'"recloop:source" = "([^"]+)"', tags) if isinstance(tags, str) else None
            )
            assert match, f"{root.name}.{name} has no recloop:source tag"
            command = first(body["image_config"])["command"]
            out[match.group(1)] = command[0]
    return out


assert tfparse.TERRAFORM.is_dir()
