"""Each function's and task's environment, as terraform/ sets it, for the demo's resources.

The names and the value expressions mirror terraform/modules/{ingest,training,serving}; the
test tests/infra/test_infra_demo_env.py parses those files (python-hcl2), resolves them with
`Resources.variables()` and fails when this module and Terraform disagree. What the demo adds
or changes (the AWS endpoint, the compressed clock, a SQLite feature store because no DocumentDB
runs here) is applied by the site on top, and listed in `DEMO_OVERRIDES`.
"""

from __future__ import annotations

from dataclasses import dataclass

ACCOUNT = "123456789012"
REGION = "us-east-1"

# Set by the demo on top of Terraform's values, and why. (The secrets' values are the demo's
# own: the features secret names a SQLite file because no DocumentDB runs here, the candidates
# secret "inprocess://" because no Elasticsearch does.)
DEMO_OVERRIDES = {
    "RECLOOP_MODEL_CACHE_DIR": "the task's /var/cache volume: a folder under the demo's root",
    "RECLOOP_MONITOR_SERVICE_METRICS_URI": "same: a file under the demo's root",
    "RECLOOP_LOOP_CONFIG": "the compressed clock: windows of seconds instead of hours",
    "RECLOOP_WATCH_INTERVAL_SECONDS": "the compressed clock: serving polls the registry often",
    "RECLOOP_GUARD_WINDOW_MINUTES": "the compressed clock: how long serving holds back an arm",
    "RECLOOP_GUARD_HOLDBACK_SHARE": "the demo's small traffic: half the users per arm",
    "RECLOOP_BACKEND_TIMEOUT_MS": "SQLite on a busy shared machine: a second per lookup",
    "AWS_ENDPOINT_URL": "every client talks to the moto server on 127.0.0.1",
}


@dataclass(frozen=True)
class Resources:
    """The demo account's resource names (Terraform's variables and computed attributes)."""

    name: str = "recloop-demo"
    environment: str = "demo"
    bucket: str = "recloop-demo-data"
    lake_prefix: str = "lake"
    registry_prefix: str = "models"
    stream: str = "recloop-demo-weblogs"
    metrics_namespace: str = "recloop"
    # Secrets Manager ARNs (moto makes them when the secrets are created).
    features_secret_arn: str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:features"
    candidates_secret_arn: str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cands"
    visitor_key_secret_arn: str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:key"
    origin_secret_arn: str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:origin"
    training_image_tag: str = "demo"
    training_instance_type: str = "ml.m5.xlarge"
    web_concurrency: int = 2

    @property
    def lake_uri(self) -> str:
        return f"s3://{self.bucket}/{self.lake_prefix}"

    @property
    def registry_artifacts_uri(self) -> str:
        return f"s3://{self.bucket}/{self.registry_prefix}"

    @property
    def model_package_group(self) -> str:
        return f"{self.name}-recommenders"

    @property
    def sagemaker_role_arn(self) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{self.name}-sagemaker-training"

    @property
    def training_image_uri(self) -> str:
        repository = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{self.name}-training"
        return f"{repository}:{self.training_image_tag}"

    def variables(self) -> dict[str, str]:
        """Terraform's inputs and the computed attributes the environments use, by expression."""
        return {
            "var.environment": self.environment,
            "var.lake_uri": self.lake_uri,
            "var.features_secret_arn": self.features_secret_arn,
            "var.candidates_secret_arn": self.candidates_secret_arn,
            "var.visitor_key_secret_arn": self.visitor_key_secret_arn,
            "aws_secretsmanager_secret.origin.arn": self.origin_secret_arn,
            "var.metrics_namespace": self.metrics_namespace,
            "var.registry_artifacts_uri": self.registry_artifacts_uri,
            "var.training_instance_type": self.training_instance_type,
            "var.training_image_tag": self.training_image_tag,
            "tostring(var.web_concurrency)": str(self.web_concurrency),
            "var.events_stream_name": self.stream,
            "var.model_package_group_name": self.model_package_group,
            "aws_sagemaker_model_package_group.this.model_package_group_name": (
                self.model_package_group
            ),
            "aws_iam_role.sagemaker.arn": self.sagemaker_role_arn,
            "aws_ecr_repository.this.repository_url": self.training_image_uri.rsplit(":", 1)[0],
        }


def weblog_processor_env(r: Resources) -> dict[str, str]:
    """terraform/modules/ingest: aws_lambda_function.this."""
    return {
        "RECLOOP_ENVIRONMENT": r.environment,
        "RECLOOP_LAKE_URI": r.lake_uri,
        "RECLOOP_FEATURES_URI_SECRET_ARN": r.features_secret_arn,
        "RECLOOP_VISITOR_KEY_SECRET_ARN": r.visitor_key_secret_arn,
        "POWERTOOLS_SERVICE_NAME": "weblog_processor",
        "POWERTOOLS_METRICS_NAMESPACE": r.metrics_namespace,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def loop_env(r: Resources) -> dict[str, str]:
    """terraform/modules/training: local.loop_environment (both loop functions)."""
    return {
        "RECLOOP_ENVIRONMENT": r.environment,
        "RECLOOP_VISITOR_KEY_SECRET_ARN": r.visitor_key_secret_arn,
        "RECLOOP_LAKE_URI": r.lake_uri,
        "RECLOOP_REGISTRY_URI": f"sagemaker://{r.model_package_group}",
        "RECLOOP_REGISTRY_ARTIFACTS_URI": r.registry_artifacts_uri,
        "RECLOOP_MONITOR_DECISION_LOG_URI": f"{r.registry_artifacts_uri}/decisions/decisions.jsonl",
        "RECLOOP_SAGEMAKER_ROLE_ARN": r.sagemaker_role_arn,
        "RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI": r.training_image_uri,
        "RECLOOP_SAGEMAKER_INSTANCE_TYPE": r.training_instance_type,
        "RECLOOP_SAGEMAKER_OUTPUT_URI": f"{r.registry_artifacts_uri}/jobs",
        "POWERTOOLS_METRICS_NAMESPACE": r.metrics_namespace,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def monitor_env(r: Resources) -> dict[str, str]:
    """terraform/modules/training: aws_lambda_function.monitor."""
    return {**loop_env(r), "POWERTOOLS_SERVICE_NAME": "monitor"}


def promote_env(r: Resources) -> dict[str, str]:
    """terraform/modules/training: aws_lambda_function.promote."""
    return {
        **loop_env(r),
        "POWERTOOLS_SERVICE_NAME": "promote",
        "RECLOOP_FEATURES_URI_SECRET_ARN": r.features_secret_arn,
        "RECLOOP_CANDIDATES_URI_SECRET_ARN": r.candidates_secret_arn,
    }


def serving_secrets(r: Resources) -> dict[str, str]:
    """terraform/modules/serving: the container's `secrets` (ECS injects their values)."""
    return {
        "RECLOOP_FEATURES_URI": r.features_secret_arn,
        "RECLOOP_CANDIDATES_URI": r.candidates_secret_arn,
        "RECLOOP_VISITOR_KEY": r.visitor_key_secret_arn,
        "RECLOOP_ORIGIN_SECRET": r.origin_secret_arn,
    }


def serving_env(r: Resources) -> dict[str, str]:
    """terraform/modules/serving: the container's `environment` (secrets are not here)."""
    return {
        "RECLOOP_ENVIRONMENT": r.environment,
        "RECLOOP_REGISTRY_URI": f"sagemaker://{r.model_package_group}",
        "RECLOOP_REGISTRY_ARTIFACTS_URI": r.registry_artifacts_uri,
        "RECLOOP_MODEL_CACHE_DIR": "/var/cache/recloop/models",
        "RECLOOP_MONITOR_SERVICE_METRICS_URI": "file:///var/cache/recloop/metrics/service.jsonl",
        "RECLOOP_EVENTS_URI": f"kinesis://{r.stream}",
        "RECLOOP_CORS_ORIGINS": "[]",
        "POWERTOOLS_METRICS_NAMESPACE": r.metrics_namespace,
        "POWERTOOLS_SERVICE_NAME": "serving",
        "WEB_CONCURRENCY": str(r.web_concurrency),
    }


def training_job_env(r: Resources) -> dict[str, str]:
    """What recloop.training.sagemaker.launch puts in CreateTrainingJob's Environment."""
    return {
        "RECLOOP_REGISTRY_URI": f"sagemaker://{r.model_package_group}",
        "RECLOOP_REGISTRY_ARTIFACTS_URI": r.registry_artifacts_uri,
    }
