"""EventWindow: one lake scan, sub-windows identical to the dataset builder's own lake reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recloop.training import dataset as ds
from recloop.training.window import EventWindow
from training_fixtures import synthetic_events, write_synthetic_lake


def test_sub_windows_match_reading_the_lake_directly(tmp_path: Path) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=1)
    # A redelivered batch: every event twice in the lake, counted once.
    lake.write_events(synthetic_events(seed=1).slice(0, 300), batch_id="redelivery")
    start = datetime(2026, 1, 3, tzinfo=UTC)
    split = datetime(2026, 1, 15, tzinfo=UTC)
    end = datetime(2026, 1, 22, tzinfo=UTC)
    config = ds.DatasetConfig(half_life_days=5.0, min_user_interactions=2)
    window = EventWindow.read(lake, start, end)
    for lo, hi in ((start, split), (start, end), (split, end)):
        mine = window.interactions(lo, hi, config)
        theirs = ds.from_lake(lake, lo, hi, config)
        assert mine.user_ids.tolist() == theirs.user_ids.tolist()
        assert mine.item_ids.tolist() == theirs.item_ids.tolist()
        np.testing.assert_allclose(mine.matrix.toarray(), theirs.matrix.toarray(), rtol=1e-6)
        np.testing.assert_allclose(mine.ages.toarray(), theirs.ages.toarray(), rtol=1e-5)
    train = window.interactions(start, split, config)
    clicks = window.clicks(split, end, train)
    direct = ds.align(
        ds.from_lake(lake, split, end, ds.DatasetConfig({"click": 1.0})),
        train.user_ids,
        train.item_ids,
    )
    assert (clicks != direct).nnz == 0
    assert window.snapshot.rows == sum(o.rows for o in window.snapshot.objects) > 0
