"""Re-running a recorded run reproduces its metrics, on exactly the lake objects it read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recloop.errors import LakeError
from recloop.lake import Lake
from recloop.registry import registry_from_uri
from recloop.training.pipeline import TrainOptions, reproduce, train
from recloop.training.runs import RunTracker
from training_fixtures import synthetic_events, write_synthetic_lake

# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
OPTIONS = TrainOptions(
    min_holdout_users=1,
    families=("als",),
    params={"factors": 8, "iterations": 4, "regularization": 0.1, "num_threads": 2},
    holdout_days=7,
    validation_days=7,
    search_budget=1,  # the given params only: no search
)


def test_a_recorded_run_reproduces_its_metrics_even_after_new_data_arrives(
    tmp_path: Path,
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    first = train(OPTIONS, lake, registry, tracker)
    # Late events land inside the recorded window: a naive re-run would see them.
    lake.write_events(synthetic_events(seed=4, n_users=60), batch_id="late-arrivals")
    naive = train(replace(OPTIONS, register=False), lake, registry, tracker)
    assert naive.holdout != first.holdout
    again = reproduce(first.run.run_id, tracker, registry)
    assert again.recorded["recall@10"] > 0
    assert again.matches(tolerance=1e-9), (again.recorded, again.reproduced)
    record = tracker.get(again.new_run_id)
    assert record.kind == "reproduce"
    assert record.snapshot is not None and first.run.snapshot is not None
    assert record.snapshot["digest"] == first.run.snapshot["digest"]
    assert len(registry.list()) == 1  # a reproduction registers nothing


def test_a_changed_lake_object_makes_the_reproduction_fail_loudly(tmp_path: Path) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    first = train(OPTIONS, lake, registry, tracker)
    assert first.run.snapshot is not None
    victim = tmp_path / "lake" / first.run.snapshot["objects"][0]["key"]
    victim.write_bytes(victim.read_bytes() + b"tampered")
    with pytest.raises(LakeError, match="changed since the run"):
        reproduce(first.run.run_id, tracker, registry, lake=Lake.from_uri(lake.uri))
    assert tracker.list()[-1].status == "failed"
