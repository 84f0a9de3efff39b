"""Step 1 of a first deploy: what must exist before any pipeline job can run in an AWS account.

Run once per account, by a person with administrator credentials for it (docs/deploy.md):

    python terraform/scripts/bootstrap-account.py dev  --gitlab-project group/recloop
    python terraform/scripts/bootstrap-account.py prod --gitlab-project group/recloop

It makes, and on a re-run leaves as they are (or corrects):
- the Terraform state bucket recloop-tfstate-<account>: versioned, SSE-KMS by default, public
  access blocked, TLS-only, saved plans (plans/) expiring after 14 days;
- GitLab's OIDC identity provider (audience sts.amazonaws.com);
- the deployer role recloop-<env>-deployer, trusted by GitLab ID tokens of this project only:
  dev from the default branch (main), prod only from protected release-* tags. GitLab's `sub`
  claim is the only one AWS can match, and every job of a main pipeline carries the same one,
  so a prod role trusted from main could be assumed by any job on main (a test job's
  dependency included); release tags are created only by maintainers (protected tags).
It prints the CI/CD variables to set. Nothing here is secret: no keys are created.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError

AUDIENCE = "sts.amazonaws.com"
PLANS_PREFIX = "plans/"
DEPLOYER_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"


def subject(env: str, project: str, branch: str = "main") -> tuple[str, str]:
    """(IAM condition operator, GitLab `sub` pattern) a deployer role of `env` trusts."""
    if env == "prod":
        return "StringLike", f"project_path:{project}:ref_type:tag:ref:release-*"
    return "StringEquals", f"project_path:{project}:ref_type:branch:ref:{branch}"


def trust_policy(provider_arn: str, host: str, env: str, project: str) -> dict[str, Any]:
    """The deployer role's trust: this project's ID tokens, from the right refs, for STS."""
    operator, sub = subject(env, project)
    conditions: dict[str, dict[str, str]] = {"StringEquals": {f"{host}:aud": AUDIENCE}}
    conditions.setdefault(operator, {})[f"{host}:sub"] = sub
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": conditions,
            }
        ],
    }


def ensure_state_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            }
        ),
    )
    # Saved plans hold the state's secrets: kept no longer than a pipeline can need them.
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire-saved-plans",
                    "Status": "Enabled",
                    "Filter": {"Prefix": PLANS_PREFIX},
                    "Expiration": {"Days": 14},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                },
                {
                    "ID": "old-state-versions",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "recloop/"},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 90},
                },
            ]
        },
    )


def ensure_oidc_provider(iam: Any, url: str) -> str:
    host = url.removeprefix("https://")
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        if entry["Arn"].endswith(f"oidc-provider/{host}"):
            arn = str(entry["Arn"])
            if (
                AUDIENCE
                not in iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)[
                    "ClientIDList"
                ]
            ):
                iam.add_client_id_to_open_id_connect_provider(
                    OpenIDConnectProviderArn=arn, ClientID=AUDIENCE
                )
            return arn
    # No thumbprint: IAM verifies well-known issuers' certificates itself.
    reply = iam.create_open_id_connect_provider(Url=url, ClientIDList=[AUDIENCE])
    return str(reply["OpenIDConnectProviderArn"])


def ensure_deployer_role(iam: Any, env: str, trust: dict[str, Any]) -> str:
    name = f"recloop-{env}-deployer"
    document = json.dumps(trust)
    try:
        arn = str(iam.get_role(RoleName=name)["Role"]["Arn"])
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=document)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        arn = str(
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=document,
                Description=f"recloop {env}: GitLab CI deploys (bootstrap-account.py)",
                MaxSessionDuration=3 * 3600,  # apply:prod waits up to 90 minutes for CodeDeploy
            )["Role"]["Arn"]
        )
    iam.attach_role_policy(RoleName=name, PolicyArn=DEPLOYER_POLICY)
    return arn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", choices=["dev", "prod"])
    parser.add_argument("--gitlab-project", required=True, help="group/project (subgroups too)")
    parser.add_argument("--gitlab-url", default="https://gitlab.com")
    parser.add_argument("--region", default="eu-west-1")
    args = parser.parse_args(argv)

    session = boto3.Session(region_name=args.region)
    account = session.client("sts").get_caller_identity()["Account"]
    bucket = f"recloop-tfstate-{account}"
    ensure_state_bucket(session.client("s3"), bucket, args.region)
    iam = session.client("iam")
    provider = ensure_oidc_provider(iam, args.gitlab_url)
    host = args.gitlab_url.removeprefix("https://")
    role = ensure_deployer_role(
        iam, args.env, trust_policy(provider, host, args.env, args.gitlab_project)
    )
    upper = args.env.upper()
    sys.stdout.write(
        f"Set these GitLab CI/CD variables (protected):\n"
        f"  AWS_ROLE_ARN_{upper}={role}\n"
        f"  TF_STATE_BUCKET_{upper}={bucket}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
