"""terraform/scripts/training-env.py: the scheduled pipeline's settings come from the monitor.

Real boto3 Lambda calls against moto: the script prints one shell-quoted export per RECLOOP_*
variable of the function, nothing else, and refuses a function that has none.
"""

from __future__ import annotations

import io
import runpy
import subprocess
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from tfparse import REPO

SCRIPT = REPO / "terraform" / "scripts" / "training-env.py"


@pytest.fixture
def lambda_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield boto3.client("lambda")


def _function(client: Any, name: str, variables: dict[str, str]) -> None:
    role = boto3.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return None\n")
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="handler.lambda_handler",
        Code={"ZipFile": package.getvalue()},
        Environment={"Variables": variables},
    )


def _run(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    main = runpy.run_path(str(SCRIPT))["main"]
    code = main(name)
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_quoted_exports_of_the_recloop_settings_only(
    lambda_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _function(
        lambda_client,
        "recloop-prod-monitor",
        {
            "RECLOOP_LAKE_URI": "s3://lake-bucket/lake",
            "RECLOOP_VISITOR_KEY": "it's $ecret",
            "POWERTOOLS_SERVICE_NAME": "monitor",
        },
    )
    code, out, _ = _run("recloop-prod-monitor", capsys)
    assert code == 0
    assert out.splitlines() == [
        "export RECLOOP_LAKE_URI=s3://lake-bucket/lake",
        "export RECLOOP_VISITOR_KEY='it'\"'\"'s $ecret'",
    ]
    # The output is meant for `eval`: a shell must read back exactly the values.
    echoed = subprocess.run(
        ["sh", "-c", out + 'printf "%s" "$RECLOOP_VISITOR_KEY"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert echoed.stdout == "it's $ecret"


def test_refuses_a_function_without_recloop_settings(
    lambda_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _function(lambda_client, "unrelated", {"OTHER": "1"})
    code, out, err = _run("unrelated", capsys)
    assert code == 2
    assert out == ""
    assert "no RECLOOP_* variables" in err
