"""What the loop's retrain fits, and who runs it (the trainer strategies).

A retrain runs the same pipeline as `recloop train` (`recloop.training.pipeline.train`): the
families of `TrainSpec.families` (none named: every family with a search space), a budgeted
search on a validation window, the organic holdout, the refit, registration. What is the
loop's own is the window (it ends at the pass's `now`) and that the job registers its model
*without* applying the gate's verdict: the controller applies it when the job finishes, against
the champion as it stands then (`RetrainLoop.finish`).

Trainers:
- `InProcessTrainer` fits in this process and returns when done (CLI, demo, tests);
- `SageMakerTrainer` starts a SageMaker training job and returns at once; the job's state
  change event reaches the controller through the promote Lambda.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from recloop.errors import RecloopError
from recloop.lake import Lake
from recloop.registry import ModelRegistry
from recloop.registry.gate import GateConfig
from recloop.training.dataset import DatasetConfig
from recloop.training.pipeline import TrainOptions, train
from recloop.training.runs import RunTracker

log = logging.getLogger(__name__)

_DAY = timedelta(days=1)
COMPLETED = "Completed"  # SageMaker's TrainingJobStatus values, used by every trainer
FAILED = "Failed"


@dataclass(frozen=True)
class TrainSpec:
    """What a retrain fits: the pipeline's families, search and windows, ending at `now`."""

    families: tuple[str, ...] = ()  # none: every family with a search space (as `recloop train`)
    params: dict[str, Any] = field(default_factory=dict)  # fixed, as `recloop train --param`
    search_budget: int = 4  # configurations tried per family
    window: timedelta = timedelta(days=28)  # training data ends at `now`
    holdout: timedelta = timedelta(days=1)  # the window's tail the gate compares on
    validation: timedelta = timedelta(days=1)  # before the holdout: what the search scores on
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    k: int = 10
    eval_users: int = 5000
    seed: int = 42
    min_test_users: int = 20
    test_types: tuple[str, ...] = ("click",)

    def to_dict(self) -> dict[str, Any]:
        return {
            "families": list(self.families),
            "params": dict(self.params),
            "search_budget": self.search_budget,
            "window_seconds": self.window.total_seconds(),
            "holdout_seconds": self.holdout.total_seconds(),
            "validation_seconds": self.validation.total_seconds(),
            "dataset": self.dataset.to_dict(),
            "k": self.k,
            "eval_users": self.eval_users,
            "seed": self.seed,
        }

    def searches(self) -> bool:
        """Whether there is anything to choose between (then a validation window is needed)."""
        return self.search_budget > 1 or len(self.families) != 1

    def options(self, gate: GateConfig, end: datetime) -> TrainOptions:
        """The pipeline's options for this spec on [end - window, end)."""
        return TrainOptions(
            families=tuple(self.families),
            params=dict(self.params),
            since=(end - self.window).isoformat(),
            until=end.isoformat(),
            k=self.k,
            metric=gate.metric,
            seed=self.seed,
            holdout_days=self.holdout / _DAY,
            validation_days=self.validation / _DAY if self.searches() else 0.0,
            search_budget=self.search_budget,
            eval_users=self.eval_users,
            dataset=self.dataset.to_dict(),
            gate=gate,
            holdout_types=tuple(self.test_types),
            min_holdout_users=self.min_test_users,
        )


@dataclass(frozen=True)
class JobEnd:
    """How a training job ended, as its state change event says."""

    job: str
    status: str  # Completed, Failed or Stopped (SageMaker's TrainingJobStatus)
    failure: str | None = None


class Trainer(Protocol):
    """Runs a retrain's training job; the controller decides everything around it."""

    kind: str  # recorded in the retrain decision: "in_process" or "sagemaker"
    lease_ttl: timedelta  # how long a job may hold the retrain lease before it is presumed lost

    def job_name(self) -> str:
        """A fresh, unique job name (the run id of the registered model)."""
        ...

    def start(self, job: str, options: TrainOptions, context: dict[str, Any]) -> JobEnd | None:
        """Start `job`; how it ended when it ran here to the end, None when it runs elsewhere
        (its end reaches `RetrainLoop.finish` later). Raises RecloopError when it cannot start."""
        ...


class InProcessTrainer:
    """The pipeline in this process; registers the model and returns when done."""

    kind = "in_process"

    def __init__(
        self, lake: Lake, registry: ModelRegistry, lease_ttl: timedelta = timedelta(hours=2)
    ) -> None:
        self.lake = lake
        self.registry = registry
        self.lease_ttl = lease_ttl

    def job_name(self) -> str:
        return f"loop-{secrets.token_hex(6)}"

    def start(self, job: str, options: TrainOptions, context: dict[str, Any]) -> JobEnd:
        tracker = RunTracker.for_registry(self.registry)
        try:
            with tempfile.TemporaryDirectory(prefix="recloop-loop-") as tmp:
                train(
                    options,
                    self.lake,
                    self.registry,
                    tracker,
                    bundle_dir=Path(tmp) / "bundle",
                    run_id=job,
                    apply_decision=False,
                    context=context,
                )
        except RecloopError as exc:  # too little fresh data, an empty window, a bad bundle
            log.warning("training job %s failed: %s", job, exc)
            return JobEnd(job, FAILED, f"{type(exc).__name__}: {exc}")
        return JobEnd(job, COMPLETED)


class SageMakerTrainer:
    """A SageMaker training job per retrain (recloop.training.sagemaker.launch, no waiting).

    The job's name starts with the name the controller recorded (SageMaker's SDK appends a
    timestamp); the job registers its model without deciding, and its state change event runs
    the promote Lambda, which hands it to the controller.
    """

    kind = "sagemaker"

    def __init__(self, config: Any, boto_session: Any = None) -> None:
        from recloop.training.sagemaker import LaunchConfig

        assert isinstance(config, LaunchConfig)
        self.config = config
        self.boto_session = boto_session
        # A job runs at most max_runtime; its state change event may come a little later.
        self.lease_ttl = timedelta(seconds=config.max_runtime_seconds) + timedelta(hours=1)

    def job_name(self) -> str:
        return f"{self.config.base_job_name}-{secrets.token_hex(4)}"

    def start(self, job: str, options: TrainOptions, context: dict[str, Any]) -> None:
        from recloop.training.sagemaker import launch

        config = replace(self.config, base_job_name=job)
        result = launch(
            options, config, boto_session=self.boto_session, wait=False, logs=False, decide=False
        )
        log.info("training job %s started for %s", result.job_name, job)
        return None
