"""SageMaker training: the container entrypoint's logic and the training-job launcher.

The container (training/entrypoint.py, run as `train` by SageMaker) follows SageMaker's
conventions and calls `run_entrypoint`:
    /opt/ml/input/config/hyperparameters.json   TrainOptions as strings (SageMaker's format)
    SM_CHANNEL_TRAIN    the "train" channel: the window's lake objects (a manifest file's
                        copy, recloop.training.channel), read as a file:// lake
    SM_MODEL_DIR        the bundle is written to <model dir>/bundle (SageMaker uploads it)
    SM_OUTPUT_DATA_DIR  result.json and run.json of the run
    TRAINING_JOB_NAME   becomes the run id, so job, run record and model version link up
    /opt/ml/output/failure   the reason, when the job fails (SageMaker shows it)
The job registers and gates its model itself (RECLOOP_REGISTRY_URI in its environment), as
`recloop train` does locally, unless its hyperparameter `decide` is "false": then the version
stays PendingManualApproval with the verdict in its run record, and whoever started the job
applies a verdict when it ends (the retrain loop, against the champion as it stands then).
`--backend local` runs the same entrypoint in-process in a temporary /opt/ml-like tree.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from recloop.errors import ConfigError, RecloopError
from recloop.lake import Lake
from recloop.registry import ModelRegistry, ModelVersion, open_registry
from recloop.training.pipeline import Progress, TrainOptions, TrainResult, train
from recloop.training.runs import RunTracker, new_run_id

log = logging.getLogger(__name__)

_ML = Path("/opt/ml")
# Job names are at most 63 characters; the launch adds "-" + 6 hex and the SDK "-" + 14 digits.
_JOB_BASE = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,39}")
# TrainOptions fields a hyperparameter may set, and the gate's (prefixed gate_).
DECIDE = "decide"  # hyperparameter: "false" registers without applying the gate's verdict
_GATE_KEYS = {
    "gate_margin": "margin",
    "gate_bootstrap_samples": "bootstrap_samples",
    "gate_confidence": "confidence",
}


@dataclass(frozen=True)
class SageMakerPaths:
    """Where SageMaker puts inputs and expects outputs (overridable by SM_* variables)."""

    config_dir: Path
    train_channel: Path
    model_dir: Path
    output_data_dir: Path
    failure_file: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SageMakerPaths:
        root = Path(env.get("SM_ML_ROOT", str(_ML)))
        return cls(
            config_dir=Path(env.get("SM_INPUT_CONFIG_DIR", str(root / "input" / "config"))),
            train_channel=Path(env.get("SM_CHANNEL_TRAIN", str(root / "input/data/train"))),
            model_dir=Path(env.get("SM_MODEL_DIR", str(root / "model"))),
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", str(root / "output/data"))),
            failure_file=Path(env.get("SM_FAILURE_FILE", str(root / "output" / "failure"))),
        )


# ---- hyperparameters <-> options --------------------------------------------------------------


def options_to_hyperparameters(options: TrainOptions) -> dict[str, str]:
    """TrainOptions as SageMaker hyperparameters (a flat map of strings)."""
    data = options.to_dict()
    gate = data.pop("gate")
    data.pop("register")  # the job always registers: that is what it is for
    out = {key: json.dumps(value) for key, value in data.items() if value not in (None, "")}
    out.update(
        {
            f"gate_{key}": json.dumps(value)
            for key, value in gate.items()
            if key in ("margin", "bootstrap_samples", "confidence")
        }
    )
    return out


def hyperparameters_to_options(hp: Mapping[str, Any], base: TrainOptions) -> TrainOptions:
    """Read hyperparameters (strings, JSON-encoded or plain) over `base`."""
    fields = set(TrainOptions.__dataclass_fields__) - {"gate", "register"}
    values: dict[str, Any] = {}
    gate: dict[str, Any] = {}
    for key, raw in hp.items():
        value = _decode(raw)
        if key in _GATE_KEYS:
            gate[_GATE_KEYS[key]] = value
        elif key in fields:
            values[key] = value
        else:
            raise ConfigError(f"unknown hyperparameter {key!r}; known: {sorted(fields)}")
    if isinstance(values.get("families"), str):
        values["families"] = [f for f in values["families"].split(",") if f]
    if "families" in values:
        values["families"] = tuple(values["families"])
    if "params" in values and not isinstance(values["params"], dict):
        raise ConfigError("hyperparameter 'params' must be a JSON object")
    options = replace(base, **values)
    metric = values.get("metric", options.gate.metric)
    return replace(options, gate=replace(options.gate, metric=metric, **gate))


def _decode(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a plain string ("als,bpr", an ISO date)


# ---- the container entrypoint ------------------------------------------------------------------


def run_entrypoint(
    env: Mapping[str, str] | None = None,
    registry: ModelRegistry | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train as a SageMaker job does: read the conventions, run the pipeline, write outputs."""
    env = os.environ if env is None else env
    paths = SageMakerPaths.from_env(env)
    hp_file = paths.config_dir / "hyperparameters.json"
    try:
        hp = json.loads(hp_file.read_text()) if hp_file.is_file() else {}
    except ValueError as exc:
        raise ConfigError(f"{hp_file} is not JSON: {exc}") from exc
    decide = str(hp.pop(DECIDE, "true")).strip('"').lower() != "false"
    options = hyperparameters_to_options(hp, TrainOptions.from_settings())
    lake = Lake.from_uri(_lake_uri(paths, env))
    registry = registry or open_registry(env.get("RECLOOP_REGISTRY_URI"))
    tracker = RunTracker.for_registry(registry)
    result = train(
        options,
        lake,
        registry,
        tracker,
        bundle_dir=paths.model_dir / "bundle",
        run_id=env.get("TRAINING_JOB_NAME") or None,
        progress=progress,
        apply_decision=decide,
    )
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / "result.json").write_text(json.dumps(result.summary(), indent=2))
    (paths.output_data_dir / "run.json").write_text(
        json.dumps(result.run.to_dict(), indent=2, default=str)
    )
    return result


def _lake_uri(paths: SageMakerPaths, env: Mapping[str, str]) -> str:
    # The train channel holds the window's lake objects; without one, the configured lake.
    if paths.train_channel.is_dir() and any(paths.train_channel.iterdir()):
        return paths.train_channel.resolve().as_uri()
    from recloop.config import get_settings

    return env.get("RECLOOP_LAKE_URI") or get_settings().lake_uri


def main(env: Mapping[str, str] | None = None) -> int:
    """The container's `train` program: 0 on success, 1 with /opt/ml/output/failure on error."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    env = os.environ if env is None else env
    try:
        result = run_entrypoint(env)
    except RecloopError as exc:
        paths = SageMakerPaths.from_env(env)
        paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(f"{type(exc).__name__}: {exc}"[:1024])
        log.error("training failed: %s", exc)
        return 1
    log.info("training finished: %s", json.dumps(result.summary()))
    return 0


def run_local(
    options: TrainOptions,
    lake_uri: str,
    registry: ModelRegistry,
    progress: Progress | None = None,
    work_dir: Path | None = None,
) -> TrainResult:
    """`--backend local`: the SageMaker entrypoint in-process, in a temporary /opt/ml tree."""
    with tempfile.TemporaryDirectory(prefix="recloop-ml-") as tmp:
        root = work_dir or Path(tmp)
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        hp = options_to_hyperparameters(options)
        (config / "hyperparameters.json").write_text(json.dumps(hp, indent=2))
        env = {
            "SM_ML_ROOT": str(root),
            "SM_MODEL_DIR": str(root / "model"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "SM_INPUT_CONFIG_DIR": str(config),
            "TRAINING_JOB_NAME": new_run_id(),
            "RECLOOP_LAKE_URI": lake_uri,
        }
        parsed = urlparse(lake_uri)
        if parsed.scheme == "file":
            # SageMaker copies the lake prefix into the channel; a local lake is the channel.
            env["SM_CHANNEL_TRAIN"] = unquote(parsed.path)
        else:
            env["SM_CHANNEL_TRAIN"] = str(root / "input" / "data" / "train")  # empty: lake URI
        return run_entrypoint(env, registry=registry, progress=progress)


# ---- the launcher --------------------------------------------------------------------------------


def _training_channel(
    options: TrainOptions, config: LaunchConfig, boto_session: Any, name: str
) -> tuple[TrainOptions, Any]:
    """The window pinned in the options, and a ManifestFile data source of exactly its objects
    (recloop.training.channel), so the job copies the window and nothing else."""
    from sagemaker.core.shapes import S3DataSource

    from recloop.training.channel import write_channel_manifest
    from recloop.training.pipeline import resolve_window

    s3 = boto_session.client("s3")
    lake = Lake.from_uri(config.lake_uri, s3_client=s3)
    window = resolve_window(lake, options)
    # The job resolves its window again on the channel: the same `until` keeps it the same.
    options = replace(options, until=window.until.isoformat())
    uri = write_channel_manifest(
        lake, window.since, window.until, config.output_uri, f"{name}-{new_run_id()}", s3
    )
    source = S3DataSource(
        s3_data_type="ManifestFile", s3_uri=uri, s3_data_distribution_type="FullyReplicated"
    )
    return options, source


@dataclass(frozen=True)
class LaunchConfig:
    """What a SageMaker training job needs besides the training options."""

    image_uri: str
    role_arn: str
    lake_uri: str
    output_uri: str
    registry_uri: str
    registry_artifacts_uri: str | None = None
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_gb: int = 50
    max_runtime_seconds: int = 6 * 3600
    base_job_name: str = "recloop-train"
    environment: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        problems = []
        if not self.image_uri:
            problems.append("a training image (RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI)")
        if not self.role_arn.startswith("arn:"):
            problems.append("an execution role ARN (RECLOOP_SAGEMAKER_ROLE_ARN)")
        if not self.lake_uri.startswith("s3://"):
            problems.append(f"an s3:// lake (have {self.lake_uri!r})")
        if not self.output_uri.startswith("s3://"):
            problems.append("an s3:// output location (RECLOOP_SAGEMAKER_OUTPUT_URI)")
        if self.registry_uri.startswith("file:") or "://" not in self.registry_uri:
            problems.append(f"a registry the job can reach (have {self.registry_uri!r})")
        if not _JOB_BASE.fullmatch(self.base_job_name):
            problems.append(
                f"a base job name of letters, digits and hyphens, at most 40 characters "
                f"(have {self.base_job_name!r})"
            )
        if problems:
            raise ConfigError("a SageMaker training job needs " + ", ".join(problems))

    @classmethod
    def from_settings(cls, **overrides: Any) -> LaunchConfig:
        from recloop.config import get_settings

        s = get_settings()
        values: dict[str, Any] = {
            "image_uri": s.sagemaker_training_image_uri or "",
            "role_arn": s.sagemaker_role_arn or "",
            "lake_uri": s.lake_uri,
            "output_uri": s.sagemaker_output_uri or "",
            "registry_uri": s.registry_uri,
            "registry_artifacts_uri": s.registry_artifacts_uri,
            "instance_type": s.sagemaker_instance_type,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class LaunchResult:
    """The job, its status and, when it finished, the version it registered."""

    job_name: str
    status: str
    model_artifacts: str | None
    version: ModelVersion | None = None
    failure_reason: str | None = None


def launch(
    options: TrainOptions,
    config: LaunchConfig,
    boto_session: Any = None,
    wait: bool = True,
    logs: bool = True,
    registry: ModelRegistry | None = None,
    decide: bool = True,
) -> LaunchResult:
    """Start a training job with the sagemaker SDK (3.x ModelTrainer) and, when waiting, find
    the model version the job registered (its run id is the job name). `decide=False`: the job
    registers its model without applying the gate's verdict (the loop applies one later)."""
    config.validate()
    import warnings

    import boto3

    with warnings.catch_warnings():
        # sagemaker 3.x's ModelTrainer imports its own deprecated configs shim; not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.training.configs import (
            Compute,
            InputData,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.train.model_trainer import ModelTrainer

    session = Session(boto_session=boto_session or boto3.Session())
    base_job_name = f"{config.base_job_name}-{secrets.token_hex(3)}"
    options, channel = _training_channel(options, config, session.boto_session, base_job_name)
    environment = {"RECLOOP_REGISTRY_URI": config.registry_uri, **config.environment}
    if config.registry_artifacts_uri:
        environment["RECLOOP_REGISTRY_ARTIFACTS_URI"] = config.registry_artifacts_uri
    trainer = ModelTrainer(
        training_image=config.image_uri,
        role=config.role_arn,
        # The SDK names the job base + "-" + a timestamp in whole seconds: two launches in one
        # second (the loop's retrain and a manual one) would clash on the name, which is also
        # the run id. A random part per launch keeps names unique.
        base_job_name=base_job_name,
        sagemaker_session=session,
        compute=Compute(
            instance_type=config.instance_type,
            instance_count=config.instance_count,
            volume_size_in_gb=config.volume_gb,
        ),
        output_data_config=OutputDataConfig(s3_output_path=config.output_uri),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=config.max_runtime_seconds),
        hyperparameters={
            **options_to_hyperparameters(options),
            **({} if decide else {DECIDE: "false"}),
        },
        environment=environment,
    )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        trainer.train(
            input_data_config=[InputData(channel_name="train", data_source=channel)],
            wait=wait,
            logs=logs,
        )
    except (ClientError, BotoCoreError, ValueError) as exc:  # ValueError: the SDK's checks
        raise RecloopError(f"SageMaker training job failed to start or run: {exc}") from exc
    # ModelTrainer keeps the job it created here (no public accessor in sagemaker 3.x).
    job = trainer._latest_training_job
    name = str(job.training_job_name)
    described = session.boto_session.client("sagemaker").describe_training_job(TrainingJobName=name)
    status = str(described.get("TrainingJobStatus"))
    result = LaunchResult(
        job_name=name,
        status=status,
        model_artifacts=described.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        failure_reason=described.get("FailureReason"),
    )
    if wait and status == "Completed":
        registry = registry or open_registry(config.registry_uri)
        found = [v for v in registry.list() if v.run_id == name]
        result.version = found[-1] if found else None
    return result
