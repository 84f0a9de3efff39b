"""The GitLab pipeline: valid against GitLab's schema, in the stated order, every job real.

check-jsonschema ships GitLab's CI schema (vendor.gitlab-ci); the rest checks the pipeline's
shape and that every script, Dockerfile and Terraform output it relies on exists.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from tfparse import ENVS, REPO, load

CI = REPO / ".gitlab-ci.yml"
SCRIPTS = REPO / "terraform" / "scripts"


def _tool(name: str) -> str:
    """A console script of this interpreter's environment (installed by the dev extra)."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[dev]'"  # fail, never skip
    return found


def _pipeline() -> dict[str, Any]:
    return copy.deepcopy(_parsed())


@cache
def _parsed() -> dict[str, Any]:
    data = YAML(typ="safe").load(CI.read_text())
    assert isinstance(data, dict)
    return data


def _jobs() -> dict[str, dict[str, Any]]:
    reserved = {"stages", "variables", "workflow", "default", "include"}
    return {k: v for k, v in _pipeline().items() if k not in reserved and not k.startswith(".")}


def _resolved(job: dict[str, Any]) -> dict[str, Any]:
    """The job with its `extends` templates merged in (GitLab's deep merge of hashes)."""
    pipeline = _pipeline()
    merged: dict[str, Any] = {}
    parents = job.get("extends", [])
    for parent in [parents] if isinstance(parents, str) else parents:
        _merge(merged, _resolved(pipeline[parent]))
    _merge(merged, {k: v for k, v in job.items() if k != "extends"})
    return merged


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_gitlab_ci_validates_against_gitlabs_schema() -> None:
    result = _validate(CI)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_pipeline(tmp_path: Path) -> None:
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text("stages: [test]\njob:\n  stage: test\n  script: 5\n  when: sometimes\n")
    assert _validate(broken).returncode != 0


def test_stages_run_in_the_delivery_order() -> None:
    assert _pipeline()["stages"] == [
        "lint",
        "test",
        "build",
        "bootstrap",
        "push",
        "plan",
        "deploy",
        "smoke",
    ]


def _script(job: dict[str, Any]) -> list[str]:
    return [str(line) for line in _resolved(job).get("script", [])]


def test_no_job_only_echoes() -> None:
    for name, job in _jobs().items():
        lines = _script(job)
        assert lines, f"{name} has no script"
        real = [line for line in lines if not re.match(r"^\s*(echo|true|:)\b", line)]
        assert real, f"{name} only echoes"


def test_lint_and_test_run_the_make_targets_people_run() -> None:
    jobs = _jobs()
    assert "make lint" in _script(jobs["lint"])
    assert "make test" in _script(jobs["test"])


def test_terraform_jobs_check_format_validate_plan_then_apply_the_saved_plan() -> None:
    jobs = _jobs()
    for env in ("dev", "prod"):
        plan = " ".join(_script(jobs[f"plan:{env}"]))
        for step in ("terraform fmt -check -recursive", "validate", "plan -input=false -out="):
            assert step in plan
        apply = " ".join(_script(jobs[f"apply:{env}"]))
        assert 'apply -input=false "$ENV_NAME.tfplan"' in apply
        assert "deploy-serving.sh" in apply
        assert "smoke-test.sh" in " ".join(_script(jobs[f"smoke:{env}"]))
        for name in (f"plan:{env}", f"apply:{env}", f"smoke:{env}", f"push:{env}"):
            assert _resolved(jobs[name])["variables"]["ENV_NAME"] == env, name


def test_saved_plans_travel_through_the_state_bucket_never_as_artifacts() -> None:
    """A binary plan holds every secret of the state (database and Elastic passwords): anyone
    who may read a job's artifacts could read them. Only the redacted text is an artifact."""
    for name, job in _jobs().items():
        for path in _resolved(job).get("artifacts", {}).get("paths", []):
            assert not str(path).endswith((".tfplan", ".tfstate")), (name, path)
    template = _pipeline()[".terraform"]["variables"]["PLAN_URI"]
    assert template.startswith("s3://$TF_STATE_BUCKET/plans/$CI_PIPELINE_ID/")
    plan = _script(_pipeline()[".plan"])
    assert any("aws s3 cp --sse aws:kms" in line and '"$PLAN_URI"' in line for line in plan)
    assert any(line.startswith("rm ") and ".tfplan" in line for line in plan)
    apply = _script(_pipeline()[".apply"])
    assert apply[0].startswith('aws s3 cp "$PLAN_URI"')


def test_the_image_repositories_are_applied_before_the_images_are_pushed() -> None:
    """The Lambdas and the ECS service are created with image URIs in repositories the same
    stack creates: on an empty account the repositories and the images must come first."""
    jobs = _jobs()
    targets: set[str] = set()
    for env in ("dev", "prod"):
        assert f"bootstrap:{env}" in jobs[f"push:{env}"]["needs"]
        assert f"push:{env}" in jobs[f"plan:{env}"]["needs"]
        script = " ".join(_script(jobs[f"bootstrap:{env}"]))
        targets = set(re.findall(r"-target=(\S+)", script))
    repos = set()
    for module in ("serving", "training", "ingest"):
        config = load(REPO / "terraform" / "modules" / module)
        for kind in ("aws_ecr_repository", "aws_ecr_lifecycle_policy"):
            repos |= {f"module.{module}.{kind}.{name}" for name in config.resources(kind)}
    assert targets == repos


def test_prod_is_reached_only_from_release_tags_and_applied_by_hand() -> None:
    """The prod role trusts only protected release-* tags (bootstrap-account.py), so no job of a
    main pipeline may use it; apply:prod is a manual, blocking gate on a protected environment."""
    jobs = _jobs()
    for name, job in jobs.items():
        variables = _resolved(job).get("variables", {})
        rules = [r.get("if", "") for r in _resolved(job).get("rules", [])]
        if variables.get("AWS_ROLE_ARN") == "$AWS_ROLE_ARN_PROD":
            assert rules and all("CI_COMMIT_TAG =~ /^release-/" in r for r in rules), name
        if variables.get("AWS_ROLE_ARN") == "$AWS_ROLE_ARN_DEV":
            assert rules == ["$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"], name
    apply_prod = jobs["apply:prod"]
    (rule,) = apply_prod["rules"]
    assert rule["when"] == "manual" and rule["allow_failure"] is False
    assert apply_prod["needs"] == ["plan:prod"]
    assert _resolved(apply_prod)["environment"]["name"] == "production"
    workflow = [r.get("if", "") for r in _pipeline()["workflow"]["rules"]]
    assert "$CI_COMMIT_TAG =~ /^release-/" in workflow


def test_only_aws_jobs_request_an_id_token() -> None:
    for name, job in _jobs().items():
        resolved = _resolved(job)
        if "id_tokens" in resolved:
            assert resolved["variables"].get("AWS_ROLE_ARN"), f"{name} has a token and no role"


def test_every_file_the_pipeline_names_exists() -> None:
    text = CI.read_text()
    named = set(re.findall(r"((?:terraform/scripts|docker)/[\w.-]+)", text))
    assert named
    for path in named:
        assert (REPO / path).is_file(), f".gitlab-ci.yml names {path}, which does not exist"


SHELL_SCRIPTS = [*sorted(SCRIPTS.glob("*.sh")), REPO / ".ci" / "run"]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    result = subprocess.run(
        [_tool("shellcheck"), "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout


def test_scripts_read_only_outputs_both_environments_define() -> None:
    wanted = set()
    for script in SCRIPTS.glob("*.sh"):
        wanted |= set(re.findall(r"\$\(output (\w+)\)", script.read_text()))
    assert {"task_definition_arn", "api_url", "codedeploy_app_name"} <= wanted
    for env in ("dev", "prod"):
        outputs = set(load(ENVS / env).labelled("output"))
        assert wanted <= outputs, f"{env} lacks outputs {wanted - outputs}"


def test_names_the_pipeline_assumes_match_terraforms_naming() -> None:
    assert re.search(r'^  name = "recloop-prod"$', (ENVS / "prod" / "main.tf").read_text(), re.M)
    push = (SCRIPTS / "push-images.sh").read_text()
    assert 'target_repo="recloop-${env_name}-$1"' in push
    for module, repo in (("serving", "serving"), ("training", "training"), ("ingest", "lambda")):
        text = (REPO / "terraform" / "modules" / module / "main.tf").read_text()
        assert f'name                 = "${{var.name}}-{repo}"' in text


def test_shellcheck_does_flag_a_bad_script(tmp_path: Path) -> None:
    """The check above can fail: an unquoted expansion and a useless cd are flagged."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\ncd $1\nrm -rf $2/*\n")
    result = subprocess.run(
        [_tool("shellcheck"), "--severity=style", "--format=json", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    codes = {f"SC{item['code']}" for item in json.loads(result.stdout)}
    assert {"SC2086", "SC2164"} <= codes, codes
