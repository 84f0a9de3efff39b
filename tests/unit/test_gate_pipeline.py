"""The gate inside `train`: against popularity first, then against the champion, same users."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from recloop.registry import ModelStatus, registry_from_uri
from recloop.training.pipeline import TrainOptions, train
from recloop.training.runs import RunTracker
from training_fixtures import write_synthetic_lake

# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
BASE = TrainOptions(
    min_holdout_users=1, until="2026-01-15", holdout_days=4, validation_days=3, search_budget=1
)


def test_a_better_challenger_replaces_a_weak_champion_and_a_worse_one_does_not(
    tmp_path: Path,
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=11)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    weak = train(replace(BASE, families=("popularity",)), lake, registry, tracker)
    # Popularity cannot beat popularity: rejected, nothing approved by default.
    assert weak.version is not None and weak.version.status is ModelStatus.REJECTED
    assert registry.champion() is None
    registry.approve(weak.version.version, "bootstrap the loop with a baseline")

    good = train(replace(BASE, families=("itemknn",)), lake, registry, tracker)
    assert good.version is not None and good.version.status is ModelStatus.APPROVED
    assert good.decision is not None
    evidence = good.decision.evidence
    # Both champions here were refitted on the whole window: compared by their recipes.
    assert evidence["incumbent"] == f"champion v{weak.version.version}'s recipe (popularity)"
    assert evidence["champion_scored_as"]["scored"] == "recipe"
    assert evidence["champion_version"] == weak.version.version
    assert evidence["bootstrap"]["lower"] > 0
    assert good.run.metrics["champion.recall@10"] == evidence["incumbent_value"]
    champion = registry.champion()
    assert champion is not None and champion.version == good.version.version

    worse = train(replace(BASE, families=("popularity",)), lake, registry, tracker)
    assert worse.version is not None and worse.version.status is ModelStatus.REJECTED
    assert worse.decision is not None and "champion v" in worse.decision.reason
    champion = registry.champion()
    assert champion is not None and champion.version == good.version.version
