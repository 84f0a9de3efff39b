"""bootstrap-account.py, run as a person runs it, against a moto server on 127.0.0.1.

The script is started as a subprocess with AWS_ENDPOINT_URL pointing at moto's server, so its
own boto3 wiring is exercised; the result is read back with boto3. What moto cannot decide is
IAM's evaluation of the trust policy (which GitLab tokens may assume the role): the tests pin
the policy's conditions, and docs/deploy.md gives the command that proves it in a real account.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from tfparse import REPO

SCRIPT = REPO / "terraform" / "scripts" / "bootstrap-account.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("bootstrap_account", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    # The deployer role attaches an AWS-managed policy, which moto knows only when loaded.
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _run(endpoint: str, env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), env, "--gitlab-project", "acme/recloop"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "eu-west-1"},
    )


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="eu-west-1")


@pytest.mark.slow
def test_bootstrap_makes_the_state_bucket_provider_and_roles_idempotently(
    moto_server: str,
) -> None:
    for env in ("dev", "prod", "prod"):  # a re-run corrects and changes nothing
        result = _run(moto_server, env)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "AWS_ROLE_ARN_PROD=arn:aws:iam::" in result.stdout

    s3 = _client("s3", moto_server)
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket.startswith("recloop-tfstate-")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    plans = next(r for r in lifecycle if r["ID"] == "expire-saved-plans")
    assert plans["Filter"]["Prefix"] == "plans/" and plans["Expiration"]["Days"] <= 14
    ci = (REPO / ".gitlab-ci.yml").read_text()
    assert "s3://$TF_STATE_BUCKET/plans/" in ci  # where the pipeline puts saved plans

    iam = _client("iam", moto_server)
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert len(providers) == 1 and providers[0]["Arn"].endswith("oidc-provider/gitlab.com")
    for env in ("dev", "prod"):
        role = iam.get_role(RoleName=f"recloop-{env}-deployer")["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        (statement,) = trust["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"]["StringEquals"]["gitlab.com:aud"] == "sts.amazonaws.com"


def test_the_prod_role_trusts_only_release_tags_and_dev_only_main() -> None:
    """Every job of a main pipeline presents sub=...:ref_type:branch:ref:main; the prod role must
    not accept it. Proof in a real account (docs/deploy.md): from a job on main,
    `aws sts assume-role-with-web-identity --role-arn $AWS_ROLE_ARN_PROD ...` is AccessDenied."""
    import fnmatch

    module = _module()
    provider = "arn:aws:iam::123456789012:oidc-provider/gitlab.com"
    main_sub = "project_path:acme/recloop:ref_type:branch:ref:main"
    tag_sub = "project_path:acme/recloop:ref_type:tag:ref:release-2026.01.1"
    other_project = "project_path:evil/recloop:ref_type:tag:ref:release-1"

    def accepts(policy: dict[str, Any], sub: str) -> bool:
        conditions = policy["Statement"][0]["Condition"]
        for operator, pairs in conditions.items():
            for key, value in pairs.items():
                if not key.endswith(":sub"):
                    continue
                if operator == "StringEquals" and sub != value:
                    return False
                if operator == "StringLike" and not fnmatch.fnmatchcase(sub, value):
                    return False
        return True

    prod = module.trust_policy(provider, "gitlab.com", "prod", "acme/recloop")
    dev = module.trust_policy(provider, "gitlab.com", "dev", "acme/recloop")
    assert accepts(prod, tag_sub) and not accepts(prod, main_sub)
    assert not accepts(prod, other_project)
    assert accepts(dev, main_sub) and not accepts(dev, tag_sub)
    assert not accepts(dev, "project_path:acme/recloop:ref_type:branch:ref:feature-x")
