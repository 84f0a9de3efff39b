"""AWS APIs on loopback: a moto server on 127.0.0.1, the demo account's resources, clients.

Nothing is patched in-process: every client, in this process and in the function, training
and serving processes, reaches moto through the endpoint URL (AWS_ENDPOINT_URL, which boto3
reads itself), with dummy credentials.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from recloop.errors import RecloopError
from recloop.harness.terraform import REGION, Resources

log = logging.getLogger(__name__)


class LoopbackAws:
    """A moto server for one demo run; `env()` is what every AWS client process needs."""

    def __init__(self, resources: Resources) -> None:
        from moto.server import ThreadedMotoServer

        # The server logs every request, and a traceback for each API moto lacks (the SDK's
        # Experiments lookups, which recloop treats as absent): the demo's live view stays clean.
        for name in ("werkzeug", "moto", "flask.app"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.resources = resources
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

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
        kinesis.create_stream(StreamName=r.stream, StreamModeDetails={"StreamMode": "ON_DEMAND"})
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
        self._server.stop()
