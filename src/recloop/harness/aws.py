"""AWS APIs on loopback: moto's server on 127.0.0.1 (harness.motoserver, a process of its own),
the demo account's resources, clients.

Nothing is patched in-process: every client, in this process and in the function, training
and serving processes, reaches moto through the endpoint URL (AWS_ENDPOINT_URL, which boto3
reads itself), with dummy credentials.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from recloop.errors import RecloopError
from recloop.harness.processes import die_with_parent
from recloop.harness.terraform import REGION, Resources

log = logging.getLogger(__name__)


class LoopbackAws:
    """A moto server for one demo run; `env()` is what every AWS client process needs."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._server = subprocess.Popen(
            [sys.executable, "-m", "recloop.harness.motoserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        assert self._server.stdout is not None
        port = self._server.stdout.readline().strip()
        if not port.isdigit():
            self._server.kill()
            raise RecloopError(f"the moto server did not start (exit {self._server.poll()})")
        self.endpoint = f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # The sagemaker SDK checks the role with iam:SimulatePrincipalPolicy (not in moto).
            "SAGEMAKER_VALIDATE_ROLE": "false",
        }

    def session(self) -> Any:
        import boto3

        env = self.env()
        return boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def client(self, service: str) -> Any:
        from botocore.config import Config

        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        return self.session().client(service, endpoint_url=self.endpoint, config=config)

    def create_resources(self, secrets: dict[str, str]) -> Resources:
        """What `terraform apply` creates that the loop touches: bucket, stream, role, and the
        secrets (`secrets`: features, candidates, visitor_key -> value); the resources with
        the secrets' ARNs."""
        r = self.resources
        self.client("s3").create_bucket(Bucket=r.bucket)
        kinesis = self.client("kinesis")
        # One provisioned shard, not Terraform's ON_DEMAND (4 shards to start): the demo's few
        # hundred records a second fit one, and each shard's batch is a lake object of its own.
        kinesis.create_stream(StreamName=r.stream, ShardCount=1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = kinesis.describe_stream_summary(StreamName=r.stream)
            if status["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            time.sleep(0.2)
        else:
            raise RecloopError(f"stream {r.stream} did not become active")
        self.client("iam").create_role(
            RoleName=r.sagemaker_role_arn.rsplit("/", 1)[-1],
            AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}',
        )
        manager = self.client("secretsmanager")
        arns = {
            f"{name}_secret_arn": manager.create_secret(
                Name=f"{r.name}/{name}", SecretString=value
            )["ARN"]
            for name, value in secrets.items()
        }
        self.resources = replace(r, **arns)
        return self.resources

    def secret_value(self, arn: str) -> str:
        """What ECS injects for a task definition's `secrets` entry."""
        value = self.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        return str(value)

    def stop(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()  # the server stops when its stdin closes
        try:
            self._server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait()
        if self._server.stdout is not None:
            self._server.stdout.close()
