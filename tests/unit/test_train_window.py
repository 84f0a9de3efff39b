"""The training window: a lake too short for validation + holdout is refused up front, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.training.pipeline import TrainError, TrainOptions, resolve_window
from training_fixtures import write_synthetic_lake


def test_a_lake_shorter_than_validation_plus_holdout_is_refused_with_the_fix(
    tmp_path: Path,
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    with pytest.raises(TrainError, match="too short for 30 validation \\+ 30 holdout days"):
        resolve_window(lake, TrainOptions(holdout_days=30, validation_days=30))


def test_a_long_enough_lake_gives_ordered_split_points(tmp_path: Path) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    window = resolve_window(lake, TrainOptions(holdout_days=2, validation_days=2))
    assert window.validation_start < window.holdout_start < window.until
