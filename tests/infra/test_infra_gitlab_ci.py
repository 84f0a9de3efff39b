"""The GitLab pipeline: valid against GitLab's schema, in the stated order, every job real.

check-jsonschema ships GitLab's CI schema (vendor.gitlab-ci); the rest checks the pipeline's
shape and that every script, Dockerfile and Terraform output it relies on exists.
"""

from __future__ import annotations

import copy
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
        "push",
        "plan",
        "deploy-dev",
        "smoke-dev",
        "plan-prod",
        "deploy-prod",
        "smoke-prod",
        "train",
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
    plan = " ".join(_script(jobs["plan:dev"]))
    for step in ("terraform fmt -check -recursive", "validate", "plan -input=false -out=dev"):
        assert step in plan
    apply_dev = " ".join(_script(jobs["apply:dev"]))
    assert "apply -input=false dev.tfplan" in apply_dev
    assert "deploy-serving.sh dev" in apply_dev
    assert "smoke-test.sh dev" in " ".join(_script(jobs["smoke:dev"]))


def test_prod_is_applied_by_hand_after_dev_passed_its_smoke_test() -> None:
    jobs = _jobs()
    apply_prod = jobs["apply:prod"]
    main_rule = next(r for r in apply_prod["rules"] if "CI_DEFAULT_BRANCH" in r.get("if", ""))
    assert main_rule["when"] == "manual" and main_rule["allow_failure"] is False
    assert apply_prod["needs"] == ["plan:prod"]
    assert "smoke:dev" in jobs["plan:prod"]["needs"]
    assert "deploy-serving.sh prod" in " ".join(_script(apply_prod))
    assert _resolved(apply_prod)["environment"]["name"] == "production"


def test_training_runs_only_on_the_schedule() -> None:
    train = _jobs()["train:prod"]
    assert [r["if"] for r in train["rules"]] == [
        '$CI_PIPELINE_SOURCE == "schedule" && $RECLOOP_PIPELINE == "train"'
    ]
    assert any("recloop train --backend sagemaker" in line for line in _script(train))
    for name, job in _jobs().items():
        if name != "train:prod":
            first_rule = _resolved(job)["rules"][0]
            assert first_rule == {"if": '$CI_PIPELINE_SOURCE == "schedule"', "when": "never"}


def test_every_file_the_pipeline_names_exists() -> None:
    text = CI.read_text()
    named = set(re.findall(r"((?:terraform/scripts|docker)/[\w.-]+)", text))
    assert named
    for path in named:
        assert (REPO / path).is_file(), f".gitlab-ci.yml names {path}, which does not exist"


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_deploy_scripts_pass_shellcheck(script: Path) -> None:
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
    training = (REPO / "terraform" / "modules" / "training" / "main.tf").read_text()
    assert 'monitor_name             = "${var.name}-monitor"' in training
    assert re.search(r'^  name = "recloop-prod"$', (ENVS / "prod" / "main.tf").read_text(), re.M)
    assert '"recloop-prod-monitor"' in CI.read_text()
    push = (SCRIPTS / "push-images.sh").read_text()
    assert 'target_repo="recloop-${env_name}-$1"' in push
    for module, repo in (("serving", "serving"), ("training", "training"), ("ingest", "lambda")):
        text = (REPO / "terraform" / "modules" / module / "main.tf").read_text()
        assert f'name                 = "${{var.name}}-{repo}"' in text
