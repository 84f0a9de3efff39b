"""SageMaker: the container entrypoint on SageMaker's directory conventions, and the launcher's
CreateTrainingJob request through the sagemaker 3.x SDK against moto."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from recloop.errors import ConfigError
from recloop.registry import ModelStatus, registry_from_uri
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import TrainOptions
from recloop.training.sagemaker import (
    LaunchConfig,
    hyperparameters_to_options,
    launch,
    main,
    options_to_hyperparameters,
    run_entrypoint,
    run_local,
)
from training_fixtures import write_synthetic_lake

# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
FAST = TrainOptions(
    min_holdout_users=1,
    families=("als",),
    params={"factors": 8, "iterations": 4, "regularization": 0.1},
    holdout_days=7,
    validation_days=7,
    search_budget=1,  # the given params only: no search
)


def _opt_ml(root: Path, hyperparameters: dict[str, str]) -> dict[str, str]:
    """A SageMaker-like /opt/ml tree under `root`, and the environment SageMaker would set."""
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return {
        "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"),
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_FAILURE_FILE": str(root / "output" / "failure"),
        "TRAINING_JOB_NAME": "recloop-train-2026-01-22-00-00-00-000",
    }


def test_hyperparameters_round_trip_as_sagemaker_strings() -> None:
    options = TrainOptions(
        min_holdout_users=1,
        families=("als", "itemknn"),
        params={"als.factors": 16},
        since="2026-01-01",
        k=5,
        metric="ndcg@5",
        search_budget=2,
    )
    hp = options_to_hyperparameters(options)
    assert all(isinstance(v, str) for v in hp.values())
    back = hyperparameters_to_options(hp, TrainOptions())
    assert back.families == ("als", "itemknn") and back.params == {"als.factors": 16}
    assert back.since == "2026-01-01" and back.k == 5 and back.gate.metric == "ndcg@5"
    # Hand-written hyperparameters: plain strings work too.
    plain = hyperparameters_to_options(
        {"families": "als,bpr", "gate_margin": "0.05"}, TrainOptions()
    )
    assert plain.families == ("als", "bpr") and plain.gate.margin == 0.05
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        hyperparameters_to_options({"learning_rat": "0.1"}, TrainOptions())


def test_the_entrypoint_trains_from_the_channel_and_writes_sagemaker_outputs(
    tmp_path: Path,
) -> None:
    env = _opt_ml(tmp_path / "ml", options_to_hyperparameters(FAST))
    write_synthetic_lake(Path(env["SM_CHANNEL_TRAIN"]).as_uri(), seed=2)
    registry = registry_from_uri((tmp_path / "registry").as_uri())
    result = run_entrypoint(env, registry=registry)
    bundle = ModelBundle.load(Path(env["SM_MODEL_DIR"]) / "bundle")
    assert bundle.family == "als" and bundle.meta.run_id == env["TRAINING_JOB_NAME"]
    summary = json.loads((Path(env["SM_OUTPUT_DATA_DIR"]) / "result.json").read_text())
    assert summary["run_id"] == env["TRAINING_JOB_NAME"] and summary["version"] == "1"
    version = registry.get("1")
    assert version.run_id == env["TRAINING_JOB_NAME"]
    assert version.status is ModelStatus.APPROVED  # the first model beat popularity
    assert result.run.snapshot is not None
    assert result.run.snapshot["lake_uri"] == Path(env["SM_CHANNEL_TRAIN"]).resolve().as_uri()


def test_a_failing_job_writes_the_failure_file_and_exits_1(tmp_path: Path) -> None:
    env = _opt_ml(tmp_path / "ml", {"families": '["no_such_family"]'})
    env["RECLOOP_REGISTRY_URI"] = (tmp_path / "registry").as_uri()
    assert main(env) == 1
    assert "no_such_family" in Path(env["SM_FAILURE_FILE"]).read_text()


def test_local_backend_runs_the_entrypoint_on_a_local_lake(tmp_path: Path) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=5)
    registry = registry_from_uri((tmp_path / "registry").as_uri())
    stages: list[str] = []
    result = run_local(FAST, lake.uri, registry, progress=lambda s, d, n: stages.append(s))
    assert result.version is not None and result.version.run_id == result.run.run_id
    assert any("refitting" in stage for stage in stages)
    folder = registry.download(result.version.version, tmp_path / "dl")
    assert ModelBundle.load(folder).meta.snapshot_digest == result.run.snapshot["digest"]  # type: ignore[index]
    shutil.rmtree(folder)


def _launch_config(**overrides: Any) -> LaunchConfig:
    values: dict[str, Any] = {
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/recloop-train:abc123",
        "role_arn": "arn:aws:iam::123456789012:role/recloop-training",
        "lake_uri": "s3://recloop-data/lake",
        "output_uri": "s3://recloop-data/training-output",
        "registry_uri": "sagemaker://recloop-models",
        "registry_artifacts_uri": "s3://recloop-data/models",
        "instance_type": "ml.m5.2xlarge",
    }
    values.update(overrides)
    return LaunchConfig(**values)


@pytest.mark.slow
def test_the_launcher_sends_a_create_training_job_request_with_our_conventions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK checks the role with iam:SimulatePrincipalPolicy, which moto lacks; the SDK's own
    # switch turns that check off (the role must still exist).
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("iam").create_role(
            RoleName="recloop-training", AssumeRolePolicyDocument="{}"
        )
        s3 = session.client("s3")
        s3.create_bucket(Bucket="recloop-data")
        write_synthetic_lake("s3://recloop-data/lake", seed=3)
        sent: list[dict[str, Any]] = []
        session.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob",
            lambda params, **_: sent.append(dict(params)),
        )
        result = launch(
            FAST,
            _launch_config(),
            boto_session=session,
            wait=True,
            logs=False,
            registry=registry_from_uri("s3://recloop-data/registry", s3_client=s3),
        )
        uri = sent[0]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        manifest = s3.get_object(Bucket="recloop-data", Key=uri.split("/", 3)[3])["Body"].read()
    assert len(sent) == 1
    request = sent[0]
    assert request["AlgorithmSpecification"]["TrainingImage"] == _launch_config().image_uri
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert request["RoleArn"] == _launch_config().role_arn
    (channel,) = request["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    # The window's objects, by manifest file: not the lake prefix (history, quarantine).
    source = channel["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile"
    assert source["S3Uri"].startswith("s3://recloop-data/training-output/channels/")
    assert json.loads(manifest)[0] == {"prefix": "s3://recloop-data/lake/"}
    until = hyperparameters_to_options(request["HyperParameters"], TrainOptions()).until
    assert until is not None  # the job's window is the channel's
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://recloop-data/training-output"
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.2xlarge"
    assert request["Environment"]["RECLOOP_REGISTRY_URI"] == "sagemaker://recloop-models"
    assert request["Environment"]["RECLOOP_REGISTRY_ARTIFACTS_URI"] == "s3://recloop-data/models"
    assert (
        hyperparameters_to_options(request["HyperParameters"], TrainOptions()).params == FAST.params
    )
    assert request["TrainingJobName"].startswith("recloop-train")
    assert result.job_name == request["TrainingJobName"] and result.status == "Completed"
    assert result.version is None  # moto runs no container, so nothing was registered


def test_the_launcher_refuses_configs_a_job_cannot_run_with() -> None:
    with pytest.raises(ConfigError, match="s3:// lake"):
        launch(FAST, _launch_config(lake_uri="file:///tmp/lake"))
    with pytest.raises(ConfigError, match="registry the job can reach"):
        launch(FAST, _launch_config(registry_uri="file:///tmp/registry"))
    with pytest.raises(ConfigError, match="role"):
        launch(FAST, _launch_config(role_arn=""))


def test_two_launches_in_the_same_second_get_distinct_job_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datetime as real

    import sagemaker.train.utils as sdk_utils

    class StoppedClock(real.datetime):
        """The SDK's name timestamp has whole seconds; stop its clock to force one second."""

        @classmethod
        def now(cls, tz: real.tzinfo | None = None) -> StoppedClock:
            return cls(2026, 11, 27, 5, 0, 0)

    monkeypatch.setattr(sdk_utils, "datetime", StoppedClock)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        session.client("iam").create_role(
            RoleName="recloop-training", AssumeRolePolicyDocument="{}"
        )
        session.client("s3").create_bucket(Bucket="recloop-data")
        write_synthetic_lake("s3://recloop-data/lake", seed=3)
        names = [
            launch(FAST, _launch_config(), boto_session=session, wait=False, logs=False).job_name
            for _ in range(2)
        ]
        listed = session.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert names[0] != names[1]
    assert all(n.startswith("recloop-train-") and n.endswith("-20261127050000") for n in names)
    assert sorted(job["TrainingJobName"] for job in listed) == sorted(names)


def test_a_base_job_name_sagemaker_would_refuse_or_truncate_is_refused() -> None:
    with pytest.raises(ConfigError, match="base job name"):
        launch(FAST, _launch_config(base_job_name="recloop_train"))
    with pytest.raises(ConfigError, match="base job name"):
        launch(FAST, _launch_config(base_job_name="r" * 41))
