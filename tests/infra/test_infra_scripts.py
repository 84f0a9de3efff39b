"""The deploy and rollback scripts, run for real by bash against doubles of `aws` and `terraform`.

No AWS account or Terraform binary is reachable here, so two small executables on PATH play
them: `terraform output -raw NAME` answers from a table, and `aws` answers CodeDeploy and ECS
calls from a scenario (a list of deployment statuses, task definition revisions) and logs every
call. The doubles are honest about what they are: they check the scripts' own logic (how long
they wait, what they report, which revision they pick), not AWS's behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tfparse import ENVS, MODULES, REPO, load

SCRIPTS = REPO / "terraform" / "scripts"

_FAKE_TERRAFORM = """#!{python}
import json, os, sys
outputs = json.load(open(os.environ["FAKE_TF_OUTPUTS"]))
assert sys.argv[2:4] == ["output", "-raw"], sys.argv
sys.stdout.write(str(outputs[sys.argv[4]]))
"""

_FAKE_AWS = """#!{python}
import json, os, sys
path = os.environ["FAKE_AWS_SCENARIO"]
scenario = json.load(open(path))
args = sys.argv[1:]
scenario.setdefault("calls", []).append(args)
def query():
    return args[args.index("--query") + 1] if "--query" in args else ""
out = ""
if args[:2] == ["deploy", "create-deployment"]:
    out = "d-123"
elif args[:2] == ["deploy", "get-deployment"]:
    if query() == "deploymentInfo.status":
        statuses = scenario["statuses"]
        out = statuses.pop(0) if len(statuses) > 1 else statuses[0]
    elif "rollbackMessage" in query():
        out = scenario.get("rollback", "None")
    else:
        out = "Stopped\\tALARM_ACTIVE\\tthe 5xx alarm fired"
elif args[:2] == ["ecs", "describe-services"]:
    out = scenario["current"]
elif args[:2] == ["ecs", "list-task-definitions"]:
    out = "\\t".join(scenario["active"])
elif args[:2] == ["deploy", "list-deployments"]:
    out = "d-old"
json.dump(scenario, open(path, "w"))
print(out)
"""


def _run(
    script: str, tmp_path: Path, scenario: dict[str, Any], env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, source in (("terraform", _FAKE_TERRAFORM), ("aws", _FAKE_AWS)):
        tool = bin_dir / name
        tool.write_text(source.format(python=sys.executable))
        tool.chmod(0o755)
    outputs = {
        "codedeploy_app_name": "recloop-prod-serving",
        "codedeploy_deployment_group_name": "recloop-prod-serving",
        "task_definition_arn": "arn:aws:ecs:eu-west-1:1:task-definition/recloop-prod-serving:9",
        "container_name": "serving",
        "container_port": "8000",
        "deployment_wait_minutes": "55",
        "ecs_cluster_name": "recloop-prod",
        "ecs_service_name": "recloop-prod-serving",
    }
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    (tmp_path / "scenario.json").write_text(json.dumps(scenario))
    result = subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_TF_OUTPUTS": str(tmp_path / "outputs.json"),
            "FAKE_AWS_SCENARIO": str(tmp_path / "scenario.json"),
            "DEPLOY_POLL_SECONDS": "0",
            **env,
        },
    )
    return result, json.loads((tmp_path / "scenario.json").read_text())


def test_a_deployment_still_running_at_the_deadline_is_not_reported_as_rolled_back(
    tmp_path: Path,
) -> None:
    result, _ = _run(
        "deploy-serving.sh",
        tmp_path,
        {"statuses": ["InProgress"]},
        {"DEPLOY_WAIT_MINUTES": "0"},
        "prod",
    )
    assert result.returncode == 3, result.stderr
    assert "still InProgress" in result.stderr
    assert "nothing was rolled back" in result.stderr
    assert "rolled traffic back" not in result.stderr + result.stdout


def test_a_deployment_is_waited_for_until_it_succeeds(tmp_path: Path) -> None:
    statuses = ["Created", "InProgress", "InProgress", "Ready", "Succeeded"]
    result, scenario = _run("deploy-serving.sh", tmp_path, {"statuses": statuses}, {}, "prod")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    polls = [c for c in scenario["calls"] if c[:2] == ["deploy", "get-deployment"]]
    assert len(polls) == 5
    created = next(c for c in scenario["calls"] if c[:2] == ["deploy", "create-deployment"])
    assert "recloop-prod-serving:9" in json.dumps(created)  # the registered revision


def test_a_stopped_deployment_reports_codedeploys_own_rollback_message(tmp_path: Path) -> None:
    scenario = {"statuses": ["InProgress", "Stopped"], "rollback": "rolled back by d-124"}
    result, _ = _run("deploy-serving.sh", tmp_path, scenario, {}, "prod")
    assert result.returncode == 1
    assert "rolled back by d-124" in result.stderr
    assert "ALARM_ACTIVE" in result.stderr


def test_a_failed_deployment_without_rollback_says_so(tmp_path: Path) -> None:
    result, _ = _run("deploy-serving.sh", tmp_path, {"statuses": ["Failed"]}, {}, "prod")
    assert result.returncode == 1
    assert "recorded no rollback" in result.stderr


def test_rollback_picks_the_newest_revision_older_than_the_running_one(tmp_path: Path) -> None:
    """After an earlier rollback (running :5, a broken :6 and :7 still ACTIVE), "the newest
    other revision" would be :7 again; the previous one is :4."""
    family = "arn:aws:ecs:eu-west-1:1:task-definition/recloop-prod-serving"
    scenario = {
        "statuses": ["Succeeded"],
        "current": f"{family}:5",
        "active": [f"{family}:{n}" for n in (7, 6, 5, 4, 3)],
    }
    result, calls = _run("rollback-serving.sh", tmp_path, scenario, {}, "prod", "d-old")
    assert result.returncode == 0, result.stderr
    created = next(c for c in calls["calls"] if c[:2] == ["deploy", "create-deployment"])
    assert "recloop-prod-serving:4" in json.dumps(created)
    assert ":7" not in json.dumps(created)


def test_rollback_without_an_older_revision_stops(tmp_path: Path) -> None:
    family = "arn:aws:ecs:eu-west-1:1:task-definition/recloop-prod-serving"
    scenario = {"statuses": ["Succeeded"], "current": f"{family}:1", "active": [f"{family}:1"]}
    result, calls = _run("rollback-serving.sh", tmp_path, scenario, {}, "prod", "d-old")
    assert result.returncode == 2
    assert not [c for c in calls["calls"] if c[:2] == ["deploy", "create-deployment"]]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_wait_covers_the_traffic_shift_and_the_blue_termination_wait(env: str) -> None:
    """prod: 10 one-minute steps, then blue kept 30 minutes: 40 minutes before Succeeded, more
    than `aws deploy wait`'s 30. The stack's figure must exceed shift + termination wait."""
    serving = load(MODULES / "serving").locals()
    args = load(ENVS / env).labelled("module")["serving"]
    shift = serving["traffic_shift_minutes"][args["deployment_config_name"]]
    wait = serving["green_start_allowance_minutes"] + shift + args["blue_termination_wait_minutes"]
    assert wait > shift + args["blue_termination_wait_minutes"]
    if env == "prod":
        assert shift + args["blue_termination_wait_minutes"] >= 40
        assert wait > 30
    ci = (REPO / ".gitlab-ci.yml").read_text()
    job = ci.split(f"apply:{env}:", 1)[1].split("\n\n", 1)[0]
    timeout = int(job.split("timeout: ", 1)[1].split("m", 1)[0]) if "timeout:" in job else 60
    assert timeout > wait + 10, f"apply:{env}'s job timeout ({timeout} min) cuts the wait"
