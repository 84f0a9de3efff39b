"""Experiment runs: what a training run read, ran, produced and measured, recorded end to end.

A run record holds the code version (git sha, dirty flag), package versions, the full config,
the data snapshot manifest (every lake object read, with its checksum), seeds, parameters,
metrics, timings, artifact URIs, the gate's decision and the run's log.

`RunTracker` writes records under the registry root (`runs/<run_id>/run.json` and `run.log`,
each written once, when the run ends); with a SageMaker registry the same record also goes to
SageMaker Experiments (experiment = the model package group, a trial and a trial component per
run, metrics through SageMaker Metrics).
"""

from __future__ import annotations

import logging
import platform
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from recloop.errors import LakeError, NotFoundError, RecloopError
from recloop.lake import ObjectStore, Snapshot

log = logging.getLogger(__name__)

_PACKAGES = ("recloop", "numpy", "scipy", "implicit", "pandas", "pyarrow", "boto3", "sagemaker")
_RUN_KEY = re.compile(r"^runs/([^/]+)/run\.json$")
_RUN_ID = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,79}$")  # SageMaker's name rule


class RunError(RecloopError):
    """A run record could not be written or read."""


@dataclass
class RunRecord:
    """Everything about one run; `run.json` is this as JSON."""

    run_id: str
    started_at: str
    status: str = "running"  # running, succeeded, failed
    finished_at: str | None = None
    kind: str = "train"
    git: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # CPU seconds (user + system, every thread) per timed stage: steadier than wall time
    # when other jobs share the machine.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # The process's peak RSS (MB) at the end of each timed stage: where memory went.
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        start = datetime.fromisoformat(self.started_at)
        return (datetime.fromisoformat(self.finished_at) - start).total_seconds()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Run:
    """The handle a running pipeline records into (see RunTracker.start)."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._handler = _ListHandler()

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        self.record.params.update(params)

    def log_metrics(self, metrics: dict[str, float], prefix: str = "") -> None:
        self.record.metrics.update({f"{prefix}{k}": float(v) for k, v in metrics.items()})

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.record.snapshot = snapshot.to_dict()

    def add_artifact(self, name: str, uri: str) -> None:
        self.record.artifacts[name] = uri

    def set_result(self, name: str, value: Any) -> None:
        """Structured results: the search table, the gate's evidence, the chosen config."""
        self.record.results[name] = value

    @contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to timings[stage]."""
        start = time.perf_counter()
        cpu = time.process_time()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.record.timings[stage] = self.record.timings.get(stage, 0.0) + elapsed
            used = time.process_time() - cpu
            self.record.cpu_seconds[stage] = self.record.cpu_seconds.get(stage, 0.0) + used
            self.record.peak_rss_mb[stage] = _peak_rss_mb()

    @property
    def log_lines(self) -> list[str]:
        return list(self._handler.lines)


class SageMakerExperiments:
    """Mirrors run records into SageMaker Experiments (CreateTrialComponent, BatchPutMetrics)."""

    def __init__(self, experiment: str, client: Any = None, metrics_client: Any = None) -> None:
        import boto3

        self.experiment = experiment
        self.client = client if client is not None else boto3.client("sagemaker")
        self.metrics = (
            metrics_client if metrics_client is not None else boto3.client("sagemaker-metrics")
        )

    def record(self, record: RunRecord) -> None:
        """Create the experiment if needed, then a trial and a trial component for the run."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._ensure_experiment()
            self.client.create_trial(TrialName=record.run_id, ExperimentName=self.experiment)
            self.client.create_trial_component(
                TrialComponentName=record.run_id,
                DisplayName=f"recloop {record.kind} {record.run_id}",
                Status={
                    "PrimaryStatus": "Completed" if record.status == "succeeded" else "Failed",
                    "Message": (record.error or record.status)[:1024],
                },
                StartTime=datetime.fromisoformat(record.started_at),
                EndTime=datetime.fromisoformat(record.finished_at or record.started_at),
                Parameters=experiment_parameters(record),
                InputArtifacts=_artifacts({"lake": (record.snapshot or {}).get("lake_uri", "")}),
                OutputArtifacts=_artifacts(record.artifacts),
            )
            self.client.associate_trial_component(
                TrialComponentName=record.run_id, TrialName=record.run_id
            )
            if record.metrics:
                stamp = datetime.fromisoformat(record.finished_at or record.started_at)
                data = [
                    {"MetricName": name[:255], "Timestamp": stamp, "Step": 0, "Value": value}
                    for name, value in sorted(record.metrics.items())
                ]
                for lo in range(0, len(data), 10):  # BatchPutMetrics takes 10 per call
                    reply = self.metrics.batch_put_metrics(
                        TrialComponentName=record.run_id, MetricData=data[lo : lo + 10]
                    )
                    if reply.get("Errors"):
                        raise RunError(f"batch_put_metrics: {reply['Errors']}")
        except (ClientError, BotoCoreError) as exc:
            raise RunError(f"SageMaker Experiments: {exc}") from exc

    def _ensure_experiment(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.describe_experiment(ExperimentName=self.experiment)
        except (ClientError, KeyError):
            self.client.create_experiment(ExperimentName=self.experiment)


def experiment_parameters(record: RunRecord) -> dict[str, dict[str, Any]]:
    """A trial component's Parameters: numbers as NumberValue, the rest as StringValue."""
    flat: dict[str, Any] = {
        "git_sha": record.git.get("sha") or "unknown",
        "git_dirty": str(record.git.get("dirty")),
        "snapshot_digest": (record.snapshot or {}).get("digest", ""),
        "snapshot_rows": (record.snapshot or {}).get("rows", 0),
        **{f"seed.{k}": v for k, v in record.seeds.items()},
        **_flatten(record.params, "param."),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, value in list(flat.items())[:300]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            out[name[:256]] = {"StringValue": str(value)[:2500]}
        else:
            out[name[:256]] = {"NumberValue": float(value)}
    return out


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _artifacts(uris: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name[:64]: {"Value": uri[:2048]} for name, uri in uris.items() if uri}


class RunTracker:
    """Writes run records under a store's runs/ prefix, optionally mirrored to Experiments."""

    def __init__(self, store: ObjectStore, experiments: SageMakerExperiments | None = None) -> None:
        self.store = store
        self.experiments = experiments

    @classmethod
    def for_registry(
        cls, registry: Any, experiments: SageMakerExperiments | None = None
    ) -> RunTracker:
        """The tracker that keeps runs beside a registry's models (its `store`)."""
        store = getattr(registry, "store", None)
        if store is None:
            raise RunError(f"registry {getattr(registry, 'uri', registry)!r} has no object store")
        if experiments is None and str(getattr(registry, "uri", "")).startswith("sagemaker://"):
            experiments = SageMakerExperiments(
                registry.group, client=getattr(registry, "client", None)
            )
        return cls(store, experiments)

    @contextmanager
    def start(
        self,
        config: dict[str, Any],
        seeds: dict[str, int] | None = None,
        kind: str = "train",
        run_id: str | None = None,
    ) -> Iterator[Run]:
        """Record a run around the block; a failure is recorded (status failed) and re-raised."""
        run_id = run_id or new_run_id()
        if not _RUN_ID.match(run_id):
            raise RunError(f"run id {run_id!r}: letters, digits and hyphens, at most 80")
        record = RunRecord(
            run_id=run_id,
            started_at=datetime.now(UTC).isoformat(),
            kind=kind,
            git=git_info(),
            packages=package_versions(),
            config=config,
            seeds=dict(seeds or {}),
        )
        run = Run(record)
        root = logging.getLogger("recloop")
        previous = root.level
        root.addHandler(run._handler)
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        try:
            yield run
            record.status = "succeeded"
        except BaseException as exc:
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            root.removeHandler(run._handler)
            root.setLevel(previous)
            record.finished_at = datetime.now(UTC).isoformat()
            self._write(run)

    def _write(self, run: Run) -> None:
        record = run.record
        base = f"runs/{record.run_id}"
        record.log_uri = f"{self.store.uri}/{base}/run.log"
        log_text = "\n".join(run.log_lines).encode() + b"\n"
        if not self.store.put_if_absent(f"{base}/run.log", log_text):
            raise RunError(f"run {record.run_id} already has a log in {self.store.uri}")
        payload = orjson.dumps(record.to_dict(), option=orjson.OPT_INDENT_2, default=str)
        if not self.store.put_if_absent(f"{base}/run.json", payload):
            raise RunError(f"run {record.run_id} is already recorded in {self.store.uri}")
        if self.experiments is not None:
            # The record above is the source of truth; a failed mirror must not fail (or mask
            # the error of) a run whose model may already be registered.
            try:
                self.experiments.record(record)
            except RunError as exc:
                log.warning("run %s not mirrored to SageMaker Experiments: %s", record.run_id, exc)

    def list(self) -> list[RunRecord]:
        """Every recorded run, oldest first."""
        records = []
        for info in self.store.list("runs/"):
            if match := _RUN_KEY.match(info.key):
                records.append(self.get(match[1]))
        return sorted(records, key=lambda r: r.started_at)

    def get(self, run_id: str) -> RunRecord:
        try:
            data = orjson.loads(self.store.get(f"runs/{run_id}/run.json"))
        except LakeError as exc:
            raise NotFoundError(f"no run {run_id!r} in {self.store.uri}") from exc
        return RunRecord.from_dict(data)

    def log_text(self, run_id: str) -> str:
        try:
            return self.store.get(f"runs/{run_id}/run.log").decode()
        except LakeError as exc:
            raise NotFoundError(f"no log for run {run_id!r} in {self.store.uri}") from exc


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def new_run_id() -> str:
    """Sortable and unique: UTC time plus random hex, in SageMaker's name alphabet."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def git_info(repo: Path | None = None) -> dict[str, Any]:
    """The commit and dirty flag of the code that runs (RECLOOP_GIT_SHA inside containers)."""
    import os

    folder = repo or Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return {"sha": sha, "dirty": bool(status.strip()), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        # No git in a container image: the build bakes the commit into the environment.
        sha_env = os.environ.get("RECLOOP_GIT_SHA")
        return {"sha": sha_env, "dirty": None, "source": "env" if sha_env else "unknown"}


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's numbers, and Python's."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
