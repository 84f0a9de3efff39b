"""`recloop evaluate` counts clicks as the gate's holdout does: organic ones only.

A model scored on the window after its training window was usually serving in it: a click on a
list it served carries a rec_id and would score the model by its own influence.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from recloop.lake import Lake
from recloop.registry import registry_from_uri
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import TrainOptions, train
from recloop.training.report import evaluate_bundle
from recloop.training.runs import RunTracker
from training_fixtures import EventLog


def _lake(uri: str) -> Lake:
    """p00..p29 by descending popularity before 01-08; every reader saw only p29 and p01.
    After 01-08 readers r00..r09 click p00 on their own, r10..r19 p28 on a recommended list."""
    log = EventLog()
    log.popularity_ladder("2026-01-02T10:00:00+00:00")
    for r in range(20):
        log.add(f"r{r:02d}", "p29", "2026-01-03T10:00:00+00:00")
        log.add(f"r{r:02d}", "p01", "2026-01-07T10:00:00+00:00")  # the training run's holdout
        if r < 10:
            log.add(f"r{r:02d}", "p00", "2026-01-09T10:00:00+00:00")
        else:
            log.add(f"r{r:02d}", "p28", "2026-01-09T10:00:00+00:00", rec_id=f"rec-{r}")
    lake: Lake = log.write(uri, "report")
    return lake


def test_the_report_scores_organic_clicks_only(tmp_path: Path) -> None:
    lake = _lake((tmp_path / "lake").as_uri())
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    # min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
    options = TrainOptions(
        min_holdout_users=1,
        families=("popularity",),
        until="2026-01-08",
        holdout_days=2,
        validation_days=2,
    )
    trained = train(options, lake, registry, RunTracker.for_registry(registry))
    assert trained.version is not None
    bundle = ModelBundle.load(registry.download(trained.version.version, tmp_path / "v"))

    report = evaluate_bundle(bundle, lake)

    assert report.start == datetime.fromisoformat("2026-01-08T00:00:00+00:00")
    # Only r00..r09's own p00 clicks: the rec-driven p28 clicks of r10..r19 would make it 20
    # users and halve popularity's recall@10.
    assert report.users == 10
    assert report.model["recall"][report.ks.index(10)] == 1.0
