"""The SageMaker trainer: a retrain starts one training job (moto) that registers without deciding.

The loop's own guarantees (one job at a time, idempotent events, the verdict against the
champion of the moment) are tested in test_loop.py; the whole wiring on moto's server in
test_demo_aws.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from recloop.config import Settings, get_settings
from recloop.lake import Lake
from recloop.loop import SageMakerTrainer, TrainSpec
from recloop.loop.wiring import launch_config
from recloop.registry.gate import GateConfig
from recloop.training.pipeline import TrainOptions
from recloop.training.sagemaker import DECIDE, hyperparameters_to_options
from training_fixtures import synthetic_events

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@pytest.fixture
def aws_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {
        "RECLOOP_LAKE_URI": "s3://recloop-data/lake",
        "RECLOOP_REGISTRY_URI": "sagemaker://recloop-models",
        "RECLOOP_REGISTRY_ARTIFACTS_URI": "s3://recloop-data/models",
        "RECLOOP_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/recloop-training",
        "RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1",
        "RECLOOP_SAGEMAKER_OUTPUT_URI": "s3://recloop-data/training-output",
        # The SDK checks the role with iam:SimulatePrincipalPolicy, which moto lacks.
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return get_settings()


@pytest.mark.slow
def test_a_retrain_starts_one_job_that_registers_without_deciding(
    aws_settings: Settings,
) -> None:
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("iam").create_role(
            RoleName="recloop-training", AssumeRolePolicyDocument="{}"
        )
        s3 = session.client("s3")
        s3.create_bucket(Bucket="recloop-data")
        # Three days of events inside the window: the channel lists exactly their objects.
        lake = Lake.from_uri("s3://recloop-data/lake", s3_client=s3)
        lake.write_events(
            synthetic_events(days=3, start=(NOW - timedelta(days=3)).isoformat()), "shard-0"
        )
        sent: list[dict[str, Any]] = []
        session.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob",
            lambda params, **_: sent.append(dict(params)),
        )
        trainer = SageMakerTrainer(launch_config(aws_settings), boto_session=session)
        job = trainer.job_name()
        spec = TrainSpec(window=timedelta(days=14), holdout=timedelta(days=1))

        ended = trainer.start(job, spec.options(GateConfig(), NOW), {"trigger": "test"})

    assert ended is None  # the job runs on SageMaker; its state change event ends it
    [request] = sent
    assert request["TrainingJobName"].startswith(job + "-")
    hp = dict(request["HyperParameters"])
    assert hp.pop(DECIDE) == "false"  # the loop applies the verdict when the job ends
    options = hyperparameters_to_options(hp, TrainOptions())
    assert options.until == NOW.isoformat() and options.families == ()  # the whole search
    source = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    # The window's objects as a manifest file, never the whole lake (history, quarantine).
    assert source["S3DataType"] == "ManifestFile"
    assert source["S3Uri"].startswith("s3://recloop-data/training-output/channels/")
    assert trainer.lease_ttl > timedelta(
        seconds=request["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
