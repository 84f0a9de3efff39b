"""The loop in AWS: a retrain trigger starts a SageMaker training job (moto), once per incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from recloop.config import Settings, get_settings
from recloop.loop.aws import TrainingJobStarter
from recloop.monitoring import ENGAGEMENT_DROP, Alarm, AlarmState, MonitorConfig, MonitorReport
from recloop.monitoring.decisions import Action, DecisionLog
from recloop.training.pipeline import TrainOptions
from recloop.training.sagemaker import hyperparameters_to_options

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _report(at: datetime) -> MonitorReport:
    drop = Alarm(
        ENGAGEMENT_DROP,
        AlarmState.ALARM,
        "3: engagement dropped, CTR 40% -> 25%",
        at,
        "3",
        {"current": {"ctr": 0.25}, "baseline": {"ctr": 0.40}},
    )
    return MonitorReport(at, "3", [drop], MonitorConfig())


@pytest.fixture
def aws_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {
        "RECLOOP_LAKE_URI": "s3://recloop-data/lake",
        "RECLOOP_REGISTRY_URI": "sagemaker://recloop-models",
        "RECLOOP_REGISTRY_ARTIFACTS_URI": "s3://recloop-data/models",
        "RECLOOP_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/recloop-training",
        "RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1",
        "RECLOOP_SAGEMAKER_OUTPUT_URI": "s3://recloop-data/training-output",
        "RECLOOP_MONITOR_DECISION_LOG_URI": "s3://recloop-data/models/decisions.jsonl",
        # The SDK checks the role with iam:SimulatePrincipalPolicy, which moto lacks.
        "SAGEMAKER_VALIDATE_ROLE": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return get_settings()


@pytest.mark.slow
def test_a_trigger_starts_one_training_job_and_a_second_within_the_cooldown_is_held(
    aws_settings: Settings,
) -> None:
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("iam").create_role(
            RoleName="recloop-training", AssumeRolePolicyDocument="{}"
        )
        s3 = session.client("s3")
        s3.create_bucket(Bucket="recloop-data")
        sent: list[dict[str, Any]] = []
        session.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob",
            lambda params, **_: sent.append(dict(params)),
        )
        decisions = DecisionLog(aws_settings.monitor_decision_log_uri or "", s3_client=s3)
        starter = TrainingJobStarter(
            aws_settings, decisions, cooldown=timedelta(hours=1), boto_session=session
        )

        job = starter(_report(NOW))
        again = starter(_report(NOW + timedelta(minutes=15)))
        logged = decisions.list()

    assert job is not None and again is None
    [request] = sent
    assert request["TrainingJobName"] == job
    options = hyperparameters_to_options(request["HyperParameters"], TrainOptions())
    assert options.until == NOW.isoformat()  # the job trains on the lake up to the alarm
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        "s3://recloop-data/lake"
    )
    assert [d.action for d in logged] == [Action.RETRAIN, Action.HOLD]
    retrain, hold = logged
    assert retrain.trigger == ENGAGEMENT_DROP and retrain.previous_version == "3"
    assert retrain.evidence["job"] == job
    assert retrain.evidence["alarms"][0]["evidence"]["current"]["ctr"] == 0.25
    assert "cooldown" in hold.detail


def test_a_report_without_retrain_triggers_starts_nothing(aws_settings: Settings) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no job may start without a trigger")

    decisions = DecisionLog("file:///nonexistent/never-written.jsonl")
    starter = TrainingJobStarter(aws_settings, decisions, launcher=refuse)
    quiet = MonitorReport(NOW, "3", [], MonitorConfig())

    assert starter(quiet) is None
