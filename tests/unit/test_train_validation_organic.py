"""The search's validation window counts clicks as the gate's holdout does: organic ones only.

A click carrying a rec_id happened because the serving model showed the item; counting it in
validation would pick the configuration that agrees most with that model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recloop.lake import Lake
from recloop.registry import registry_from_uri
from recloop.training import dataset as ds
from recloop.training.pipeline import TrainOptions, resolve_window, train
from recloop.training.runs import RunTracker
from training_fixtures import EventLog

# Training [01-01, 01-08), validation [01-08, 01-11), holdout [01-11, 01-15).
# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
OPTIONS = TrainOptions(
    min_holdout_users=1,
    families=("popularity", "popularity_recent"),
    until="2026-01-15",
    holdout_days=4,
    validation_days=3,
    search_budget=1,
    register=False,
)
READERS = 20


def _lake(uri: str) -> Lake:
    """Items p00..p29, p00 the most popular; readers saw only p29 before the validation window.

    In the validation window each reader clicks p00 on their own (a popularity hit), clicks p28
    from a recommended list (rec_id set; far below popularity's top 10) and views p27 and p26;
    in the holdout they click p01.
    """
    log = EventLog()
    log.popularity_ladder("2026-01-03T10:00:00+00:00")  # p00 by 30 users, p29 by one
    for r in range(READERS):
        reader = f"r{r:02d}"
        log.add(reader, "p29", "2026-01-04T10:00:00+00:00")
        log.add(reader, "p00", "2026-01-09T10:00:00+00:00")
        log.add(reader, "p28", "2026-01-09T12:00:00+00:00", rec_id=f"rec-{r}")
        log.add(reader, "p27", "2026-01-10T10:00:00+00:00", kind="view")
        log.add(reader, "p26", "2026-01-10T11:00:00+00:00", kind="view")
        log.add(reader, "p01", "2026-01-12T10:00:00+00:00")
    lake: Lake = log.write(uri, "organic")
    return lake


def test_the_search_scores_on_organic_validation_clicks_only(tmp_path: Path) -> None:
    lake = _lake((tmp_path / "lake").as_uri())
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    window = resolve_window(lake, OPTIONS)
    # The data can tell the difference: every reader's validation window holds two clicks,
    # one of them recommendation-driven.
    every = ds.split_lake_window(lake, None, window.validation_start, window.holdout_start)
    readers = every.train.histories([f"r{r:02d}" for r in range(READERS)])
    assert readers.nnz == READERS
    assert every.validation.sum() == 2 * READERS

    result = train(OPTIONS, lake, registry, RunTracker.for_registry(registry))

    popularity = next(t for t in result.trials if t.family == "popularity")
    # Organic clicks only: each reader's one validation click is p00, popularity's first pick.
    # Counting the rec-driven p28 click as well would give 0.5.
    assert popularity.metrics["recall@10"] == 1.0
    assert popularity.metrics["hit_rate@10"] == 1.0
    assert result.run.results["search"][0]["metrics"]["recall@10"] == 1.0


def test_validation_counts_the_holdout_event_types(tmp_path: Path) -> None:
    lake = _lake((tmp_path / "lake").as_uri())
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    # Counting views as well (the loop's demo does) applies to both windows: each reader's
    # validation window then holds the organic p00 click and p27, p26 views: one hit in three
    # (with the rec-driven p28 click it would be 1/4; clicks alone, every click, 1/2).
    options = replace(OPTIONS, holdout_types=("click", "view"))
    result = train(options, lake, registry, RunTracker.for_registry(registry))
    popularity = next(t for t in result.trials if t.family == "popularity")
    assert popularity.metrics["recall@10"] == pytest.approx(1 / 3)
    assert result.holdout["popularity_recall@10"] == 1.0
