"""Gating a version registered without a decision (a training job's): never on the refit.

The registered model is refitted on the whole window, holdout included. `gate_registered` must
decide on the holdout evaluation of the fit *before* the holdout that the run kept in the
bundle, with the champion scored on the same holdout: the decision `train` itself reaches.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recloop.lake import Lake
from recloop.registry import ModelStatus, registry_from_uri
from recloop.training.bundle import ModelBundle
from recloop.training.dataset import DatasetConfig
from recloop.training.evaluation import evaluate
from recloop.training.models import make
from recloop.training.pipeline import (
    TrainError,
    TrainOptions,
    evaluation_split,
    gate_registered,
    resolve_window,
    train,
)
from recloop.training.runs import RunTracker
from training_fixtures import (
    EventLog,
    register_test_family,
    saved_bundle,
    synthetic_events,
    write_synthetic_lake,
)

# Training before 01-08, validation [01-08, 01-11), holdout [01-11, 01-15).
# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
BASE = TrainOptions(
    min_holdout_users=1, until="2026-01-15", holdout_days=4, validation_days=3, search_budget=1
)


def _trending_lake(uri: str) -> Lake:
    """p00..p29 by descending popularity before the holdout; in the holdout 40 readers (who saw
    only p29) click p20, rank 21 before it. A model that saw the holdout knows p20 is the hit."""
    log = EventLog()
    log.popularity_ladder("2026-01-03T10:00:00+00:00")
    for r in range(40):
        log.add(f"r{r:02d}", "p29", "2026-01-04T10:00:00+00:00")
        log.add(f"r{r:02d}", "p20", "2026-01-12T10:00:00+00:00")
    lake: Lake = log.write(uri, "trend")
    return lake


def test_a_pending_version_is_gated_on_its_fit_before_the_holdout_not_on_the_refit(
    tmp_path: Path,
) -> None:
    lake = _trending_lake((tmp_path / "lake").as_uri())
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    options = replace(BASE, families=("popularity",))
    job = train(options, lake, registry, RunTracker.for_registry(registry), apply_decision=False)
    assert job.version is not None and job.version.status is ModelStatus.PENDING
    assert job.decision is not None and not job.decision.approved  # popularity vs itself

    # The flattering comparison the gate must not make: the refitted model, which has seen the
    # holdout's p20 clicks, against popularity fitted before the holdout, on the holdout.
    window = resolve_window(lake, options)
    split = evaluation_split(
        lake, None, window.holdout_start, window.until, DatasetConfig(), options
    )
    bundle = ModelBundle.load(registry.download(job.version.version, tmp_path / "v"))
    refit = make("popularity").fit(bundle.history)  # the registered refit, same items
    assert list(bundle.item_ids) == list(split.train.item_ids)
    flattered = evaluate(refit, split.train.matrix, split.validation, baseline=True)
    assert flattered.metrics["recall@10"] == 1.0
    assert flattered.baseline is not None and flattered.baseline.metrics["recall@10"] == 0.0

    version, decision = gate_registered(options, lake, registry, job.version.version)

    assert not decision.approved and version.status is ModelStatus.REJECTED
    assert decision.evidence["challenger"] == decision.evidence["incumbent_value"] == 0.0
    assert decision.evidence["incumbent"] == "popularity"
    assert decision.reason == job.decision.reason


def test_gating_later_reaches_the_decision_the_run_reached_even_after_late_events(
    tmp_path: Path,
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=11)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    first = train(replace(BASE, families=("popularity",)), lake, registry, tracker)
    assert first.version is not None
    registry.approve(first.version.version, "a baseline champion")
    job = train(replace(BASE, families=("itemknn",)), lake, registry, tracker, apply_decision=False)
    assert job.version is not None and job.decision is not None
    # Events that land in the holdout after the run do not change what it is compared on.
    late = synthetic_events(n_users=120, n_items=40, days=3, seed=99, start="2026-01-12")
    lake.write_events(late, batch_id="late")

    version, decision = gate_registered(
        replace(BASE, families=("als",), min_holdout_users=5), lake, registry, job.version.version
    )

    assert decision.approved == job.decision.approved
    assert decision.reason == job.decision.reason
    for key in ("challenger", "incumbent", "incumbent_value", "bootstrap"):
        assert decision.evidence[key] == job.decision.evidence[key]
    assert decision.evidence["challenger"] == job.holdout["recall@10"]
    assert version.status is (ModelStatus.APPROVED if decision.approved else ModelStatus.REJECTED)


def test_a_version_without_a_recorded_holdout_evaluation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_family(monkeypatch)
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=11)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    version = registry.register(saved_bundle(tmp_path / "b"), {}, "run-by-hand")
    with pytest.raises(TrainError, match="no holdout evaluation"):
        gate_registered(BASE, lake, registry, version.version)
    assert registry.get(version.version).status is ModelStatus.PENDING
