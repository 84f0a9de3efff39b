"""The loop's retrain: one family with given hyperparameters through the training pipeline.

`recloop.training.pipeline.train` does the work (organic holdout at the end of the window, the
champion scored as it serves, the refit on the whole window, registration and the gate), so
`recloop train` and the loop gate the same way. What is the loop's own is the spec: a rolling
window ending `now`, fixed hyperparameters (the demo's sabotaged ones included) rather than a
search, and the decision applied at once or left to the promote Lambda.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from recloop.lake import Lake
from recloop.registry import ModelRegistry, ModelVersion
from recloop.registry.gate import GateConfig, GateDecision
from recloop.training.dataset import DatasetConfig
from recloop.training.pipeline import TrainOptions, gate_registered, train
from recloop.training.runs import RunTracker

log = logging.getLogger(__name__)

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class TrainSpec:
    """What a retrain fits: one family and its hyperparameters on the latest window."""

    family: str = "als"
    params: dict[str, Any] = field(default_factory=lambda: {"factors": 32, "iterations": 10})
    window: timedelta = timedelta(days=28)  # training data ends at `now`
    holdout: timedelta = timedelta(days=1)  # the window's tail the gate compares on
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    k: int = 10
    eval_users: int = 5000
    seed: int = 42
    min_test_users: int = 20
    test_types: tuple[str, ...] = ("click",)

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "params": dict(self.params),
            "window_seconds": self.window.total_seconds(),
            "holdout_seconds": self.holdout.total_seconds(),
            "dataset": self.dataset.to_dict(),
            "k": self.k,
            "eval_users": self.eval_users,
            "seed": self.seed,
        }

    def options(self, gate: GateConfig, end: datetime) -> TrainOptions:
        """The pipeline's options for this spec on [end - window, end): no search, and no
        validation window (fixed hyperparameters need none)."""
        return TrainOptions(
            families=(self.family,),
            params=dict(self.params),
            since=(end - self.window).isoformat(),
            until=end.isoformat(),
            k=self.k,
            metric=gate.metric,
            seed=self.seed,
            holdout_days=self.holdout / _DAY,
            validation_days=0.0,
            search_budget=1,
            eval_users=self.eval_users,
            dataset=self.dataset.to_dict(),
            gate=gate,
            holdout_types=tuple(self.test_types),
            min_holdout_users=self.min_test_users,
        )


@dataclass
class TrainOutcome:
    """A registered challenger with the gate's decision (applied or not)."""

    version: ModelVersion
    decision: GateDecision
    run_id: str
    metrics: dict[str, float]
    window: tuple[datetime, datetime]
    seconds: float


def train_and_gate(
    lake: Lake,
    registry: ModelRegistry,
    spec: TrainSpec,
    gate: GateConfig,
    now: datetime | None = None,
    *,
    apply_decision: bool = True,
    context: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Fit `spec` on [now - window, now), gate it against the champion, register it.

    With `apply_decision` the version is approved or rejected at once; otherwise it stays
    PendingManualApproval and the caller applies `outcome.decision` (the promote Lambda).
    """
    started = datetime.now(UTC)
    end = (now or started).astimezone(UTC)
    tracker = RunTracker.for_registry(registry)
    with tempfile.TemporaryDirectory(prefix="recloop-loop-") as tmp:
        result = train(
            spec.options(gate, end),
            lake,
            registry,
            tracker,
            bundle_dir=Path(tmp) / "bundle",
            apply_decision=apply_decision,
            context=context,
        )
    # register=True: the pipeline always returns a registered version and its decision.
    assert result.version is not None and result.decision is not None
    metrics = {k: v for k, v in result.holdout.items() if not k.startswith("popularity_")}
    seconds = (datetime.now(UTC) - started).total_seconds()
    log.info("challenger v%s: %s (%.1f s)", result.version.version, result.decision.reason, seconds)
    return TrainOutcome(
        result.version,
        result.decision,
        result.run.run_id,
        metrics,
        (end - spec.window, end),
        seconds,
    )


def gate_version(
    lake: Lake,
    registry: ModelRegistry,
    version: str,
    spec: TrainSpec,
    gate: GateConfig,
    now: datetime | None = None,
) -> tuple[ModelVersion, GateDecision]:
    """Gate an already registered, still pending version against the champion and apply it.

    The promote Lambda's path when a training job registered its model without deciding: the
    version is judged by the holdout evaluation its run kept (the fit made before the holdout,
    never the refit that saw it), and the champion is scored on the same users of the same
    snapshot-pinned holdout (`recloop.training.pipeline.gate_registered`).
    """
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return gate_registered(spec.options(gate, end), lake, registry, version)
