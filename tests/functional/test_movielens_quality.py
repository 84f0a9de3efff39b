"""Quality bar on MovieLens-100K: the protocol of the Microsoft Recommenders benchmark.

Per-user stratified random 75/25 split (seed 42), K = 10, training items excluded. Published
anchors on this protocol: BiVAE 0.475 / 0.412, BPR 0.442 / 0.388, SAR 0.383 / 0.331 (nDCG@10 /
precision@10); popularity is about 0.25. The chosen configuration is EASE with the
dropout-scaled diagonal penalty on log-scaled ratings (how it was chosen: docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recloop.training.dataset import from_table, stratified_split
from recloop.training.evaluation import evaluate, paired_bootstrap
from recloop.training.models import make

pytestmark = pytest.mark.shared

CHOSEN = {"l2": 300.0, "dropout": 0.5, "weighting": "log"}


def _ratings(shared_dir: Path) -> pd.DataFrame:
    path = shared_dir / "data" / "movielens-100k" / "u.data"
    if not path.is_file():
        pytest.skip(reason=f"{path} is absent")
    names = ["user_id", "item_id", "rating", "timestamp"]
    return pd.read_csv(path, sep="\t", names=names)


def test_best_family_reaches_the_published_bar_on_ml100k(shared_dir: Path) -> None:
    data = from_table(_ratings(shared_dir), type_col=None, weight_col="rating")
    assert data.shape == (943, 1682)
    train, test = stratified_split(data.matrix, test_fraction=0.25, seed=42)

    model = make("ease", **CHOSEN).fit(train)
    result = evaluate(model, train, test, k=10, baseline=True)

    assert result.metrics["ndcg@10"] >= 0.47
    assert result.metrics["precision@10"] >= 0.41
    assert result.baseline is not None
    assert 0.2 <= result.baseline.metrics["ndcg@10"] <= 0.3  # the protocol matches the anchors
    gain = paired_bootstrap(result, result.baseline, "ndcg@10", n=300, seed=0)
    assert gain.lower > 0.15
