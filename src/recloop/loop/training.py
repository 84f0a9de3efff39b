"""Train a challenger on the latest lake window, gate it against the champion, register it.

This is the loop's thin adapter over the training building blocks (dataset, model families,
evaluation, the gate and the registry): one family with given hyperparameters, a temporal
holdout at the end of the window, the champion scored on the same users, then a refit on the
whole window (holdout included) so that what serves has seen the latest behaviour.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recloop.lake import Lake
from recloop.loop.errors import LoopError
from recloop.registry import ModelRegistry, ModelVersion
from recloop.registry.gate import BundleOnItems, GateConfig, GateDecision, apply, decide
from recloop.training.bundle import BundleMeta, ModelBundle
from recloop.training.dataset import (
    DatasetConfig,
    InteractionData,
    align,
    from_lake,
    from_table,
)
from recloop.training.evaluation import EvalResult, evaluate, select_users
from recloop.training.models import make
from recloop.training.models.base import Recommender
from recloop.training.models.popularity import Popularity
from recloop.training.runs import RunTracker

log = logging.getLogger(__name__)


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


@dataclass
class TrainOutcome:
    """A registered challenger with the gate's decision (applied or not)."""

    version: ModelVersion
    decision: GateDecision
    run_id: str
    metrics: dict[str, float]
    window: tuple[datetime, datetime]
    seconds: float


def organic_test(
    lake: Lake, train: InteractionData, start: datetime, end: datetime, types: tuple[str, ...]
) -> sp.csr_matrix:
    """Next-window interactions that no recommendation led to, on `train`'s id maps.

    A click on a recommended list (it carries a rec_id) happened because the champion showed
    that item: counting it would score every model by how much it agrees with the champion,
    and a champion could never lose. The gate compares on what users found by themselves.
    """
    columns = ["event_id", "event_type", "timestamp", "user_id", "visitor_id", "item_id", "rec_id"]
    table, _ = lake.read_events(start, end, columns=columns)
    keep = pc.and_(
        pc.is_null(table.column("rec_id")),
        pc.is_in(table.column("event_type"), value_set=pa.array(list(types))),
    )
    table = table.filter(pc.and_(keep, pc.is_valid(table.column("item_id"))))
    actor = pc.coalesce(table.column("user_id"), table.column("visitor_id"))
    frame = pa.table(
        {
            "user_id": actor,
            "item_id": table.column("item_id"),
            "event_type": table.column("event_type"),
            "timestamp": table.column("timestamp"),
        }
    ).filter(pc.is_valid(actor))
    if frame.num_rows == 0:
        return sp.csr_matrix(train.shape, dtype=np.float32)
    config = DatasetConfig(event_weights=dict.fromkeys(types, 1.0))
    return align(from_table(frame, config, end=end), train.user_ids, train.item_ids)


def served_histories(bundle: ModelBundle, data: InteractionData) -> sp.csr_matrix:
    """`data`'s rows plus each user's training history in `bundle`, on `data`'s items.

    Serving computes a signed-in user's vector from their recent events *and* the training
    rows the bundle carries (ServedModel.history_row), so a champion trained before a change
    in tastes keeps leaning on the old ones. Scoring the champion on these rows is scoring
    it as it serves; items `data` does not know are dropped.
    """
    trained = bundle.training_history([str(u) for u in data.user_ids]).tocoo()
    columns = pd.Index(np.asarray(data.item_ids).astype(str)).get_indexer(
        np.asarray(bundle.item_ids).astype(str)
    )
    cols = columns[trained.col]
    keep = cols >= 0
    extra = sp.csr_matrix(
        (trained.data[keep], (trained.row[keep], cols[keep])), shape=data.shape, dtype=np.float32
    )
    return sp.csr_matrix(data.matrix + extra, dtype=np.float32)


def _evaluate_pair(
    challenger: Recommender,
    champion: ModelBundle | None,
    train: InteractionData,
    test: sp.csr_matrix,
    spec: TrainSpec,
) -> tuple[EvalResult, EvalResult, str]:
    users = select_users(test, spec.eval_users, spec.seed)
    if len(users) < spec.min_test_users:
        raise LoopError(
            f"the holdout has {len(users)} users with clicks, need {spec.min_test_users}: "
            "too little fresh data to compare models"
        )
    ours = evaluate(challenger, train.matrix, test, spec.k, users)
    if champion is None:
        pop = Popularity().fit(train.matrix)
        return ours, evaluate(pop, train.matrix, test, spec.k, users), "popularity"
    histories = train.matrix
    if champion.history is not None:
        histories = served_histories(champion, train)
    incumbent = BundleOnItems(champion, train.item_ids)
    theirs = evaluate(incumbent, histories, test, spec.k, users)
    return ours, theirs, f"champion v{champion.version}"


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
    start, split = end - spec.window, end - spec.holdout
    champion = registry.champion()
    tracker = RunTracker.for_registry(registry)
    run_config = {"train": spec.to_dict(), "trigger": context or {}}
    with (
        tempfile.TemporaryDirectory(prefix="recloop-loop-") as tmp,
        tracker.start(run_config, {"seed": spec.seed}) as run,
    ):
        train = from_lake(lake, start, split, spec.dataset)
        if train.nnz == 0:
            raise LoopError(f"no interactions in the lake between {start} and {split}")
        if train.snapshot is not None:
            run.set_snapshot(train.snapshot)
        test = organic_test(lake, train, split, end, spec.test_types)
        challenger = make(spec.family, **spec.params).fit(train.matrix, train.ages)
        current = None
        if champion is not None:
            folder = registry.download(champion.version, Path(tmp) / "champion")
            current = ModelBundle.load(folder)
        ours, theirs, name = _evaluate_pair(challenger, current, train, test, spec)
        window = {"train_start": start.isoformat(), "split": split.isoformat()}
        window["end"] = end.isoformat()
        decision = decide(ours, theirs, name, gate, {**window, **(context or {})})
        run.log_metrics(ours.metrics, prefix="holdout_")
        run.log_metrics(theirs.metrics, prefix="incumbent_")
        full = from_lake(lake, start, end, spec.dataset)
        model = make(spec.family, **spec.params).fit(full.matrix, full.ages)
        counts = np.asarray((full.matrix > 0).sum(axis=0)).ravel().astype(np.float32)
        meta = BundleMeta(
            family=spec.family,
            params=dict(model.params),
            train_start=start.isoformat(),
            train_end=end.isoformat(),
            snapshot_digest=full.snapshot.digest if full.snapshot is not None else "",
            snapshot_rows=full.events_read,
            metrics=dict(ours.metrics),
            run_id=run.run_id,
        )
        bundle = ModelBundle(model, full.item_ids, full.user_ids, counts, meta, history=full.matrix)
        folder = bundle.save(Path(tmp) / "bundle")
        version = registry.register(folder, dict(ours.metrics), run.run_id)
        if apply_decision:
            version = apply(registry, version.version, decision)
        run.set_result("version", version.version)
        run.set_result("approved", decision.approved)
    seconds = (datetime.now(UTC) - started).total_seconds()
    log.info("challenger v%s: %s (%.1f s)", version.version, decision.reason, seconds)
    return TrainOutcome(version, decision, run.run_id, dict(ours.metrics), (start, end), seconds)


def gate_version(
    lake: Lake,
    registry: ModelRegistry,
    version: str,
    spec: TrainSpec,
    gate: GateConfig,
    now: datetime | None = None,
) -> tuple[ModelVersion, GateDecision]:
    """Gate an already registered, still pending version against the champion and apply it.

    The promote Lambda's path when a training job registered its model without deciding: both
    are scored on the lake's latest holdout (organic clicks), as `train_and_gate` does.
    """
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start, split = end - spec.window, end - spec.holdout
    champion = registry.champion()
    if champion is not None and champion.version == version:
        raise LoopError(f"version {version} is already the champion")
    with tempfile.TemporaryDirectory(prefix="recloop-gate-") as tmp:
        train = from_lake(lake, start, split, spec.dataset)
        if train.nnz == 0:
            raise LoopError(f"no interactions in the lake between {start} and {split}")
        test = organic_test(lake, train, split, end, spec.test_types)
        ours_bundle = ModelBundle.load(registry.download(version, Path(tmp) / "challenger"))
        current = None
        if champion is not None:
            current = ModelBundle.load(registry.download(champion.version, Path(tmp) / "champion"))
        challenger = BundleOnItems(ours_bundle, train.item_ids)
        ours, theirs, name = _evaluate_pair(challenger, current, train, test, spec)
    context = {"train_start": start.isoformat(), "split": split.isoformat(), "end": end.isoformat()}
    decision = decide(ours, theirs, name, gate, context)
    return apply(registry, version, decision), decision
