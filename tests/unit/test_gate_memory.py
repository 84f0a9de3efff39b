"""The gate never scores a model on data it was fitted on: a champion trained into the holdout
is compared by its recipe, and a holdout too small to decide on is a refusal, not a decision."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recloop.registry import ModelStatus, registry_from_uri
from recloop.registry.gate import BundleOnItems, served_histories
from recloop.training import dataset as ds
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import (
    TrainError,
    TrainOptions,
    _evaluate,
    _holdout_split,
    resolve_window,
    train,
)
from recloop.training.runs import RunTracker
from training_fixtures import write_synthetic_lake

# Holdout 2026-01-11 .. 01-15. The synthetic world has ~240 holdout users.
BASE = TrainOptions(
    until="2026-01-15",
    holdout_days=4,
    validation_days=3,
    search_budget=1,
    families=("ease",),
    min_holdout_users=100,
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("memory")
    return write_synthetic_lake(
        (root / "lake").as_uri(), seed=11, n_users=300, n_items=200, groups=2
    )


def test_a_champion_trained_into_the_holdout_gains_nothing_from_it(
    lake: object, tmp_path: Path
) -> None:
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    # The champion's refit covers the whole window, the holdout included (as every retrain's).
    champion = train(BASE, lake, registry, tracker)  # type: ignore[arg-type]
    assert champion.version is not None and champion.version.status is ModelStatus.APPROVED
    # What memory would be worth: its artifact scored on the holdout as it serves.
    window = resolve_window(lake, BASE)  # type: ignore[arg-type]
    _, before, holdout = _holdout_split(lake, window, ds.DatasetConfig(), BASE)  # type: ignore[arg-type]
    bundle = ModelBundle.load(registry.download(champion.version.version, tmp_path / "dl"))
    seen = served_histories(bundle, before)
    seen = seen - seen.multiply(holdout > 0)  # its answers hidden from its input, not its weights
    leaky = _evaluate(BundleOnItems(bundle, before.item_ids), seen, holdout, BASE)

    # The same recipe as challenger: a gate that scored the artifact would see it lose to
    # the champion's memory; the gate compares recipes, so the two are exactly equal.
    again = train(BASE, lake, registry, tracker)  # type: ignore[arg-type]
    assert again.decision is not None
    evidence = again.decision.evidence
    assert evidence["champion_scored_as"]["scored"] == "recipe"
    assert evidence["champion_scored_as"]["family"] == "ease"
    assert evidence["incumbent_value"] == pytest.approx(evidence["challenger"])
    assert leaky.metrics["recall@10"] > evidence["incumbent_value"] + 0.2
    assert again.version is not None and again.version.status is ModelStatus.REJECTED
    assert "margin" in again.decision.reason  # equal recipes: no improvement, not "worse"


def test_a_champion_trained_before_the_holdout_is_scored_as_it_serves(
    lake: object, tmp_path: Path
) -> None:
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    tracker = RunTracker.for_registry(registry)
    older = replace(BASE, until="2026-01-11", families=("itemknn",))
    champion = train(older, lake, registry, tracker)  # type: ignore[arg-type]
    assert champion.version is not None
    if champion.version.status is not ModelStatus.APPROVED:
        registry.approve(champion.version.version, "a champion that ended before the holdout")
    result = train(BASE, lake, registry, tracker)  # type: ignore[arg-type]
    assert result.decision is not None
    how = result.decision.evidence["champion_scored_as"]
    assert how["scored"] == "artifact" and "2026-01-11" in how["why"]


def test_too_few_holdout_users_is_a_refusal_naming_the_option(lake: object, tmp_path: Path) -> None:
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    assert TrainOptions().min_holdout_users >= 100  # the default is in the hundreds
    with pytest.raises(TrainError, match="--min-holdout-users") as info:
        train(
            replace(BASE, min_holdout_users=1000), lake, registry, RunTracker.for_registry(registry)
        )  # type: ignore[arg-type]
    assert "need 1000" in str(info.value)
    assert registry.list() == []  # nothing registered, nothing decided


@pytest.mark.parametrize("repeats", ["miss", "drop"])
def test_repeats_decides_whether_re_consumed_holdout_items_count(
    lake: object, repeats: str
) -> None:
    options = replace(BASE, repeats=repeats)
    window = resolve_window(lake, options)  # type: ignore[arg-type]
    _, before, holdout = _holdout_split(lake, window, ds.DatasetConfig(), options)  # type: ignore[arg-type]
    again = holdout.multiply(before.matrix > 0).nnz
    # The synthetic users click the same few items over and over: many holdout pairs repeat.
    assert (again > 100) if repeats == "miss" else (again == 0 and holdout.nnz > 0)


def test_allow_lets_a_model_recommend_what_the_user_had() -> None:
    import numpy as np
    import scipy.sparse as sp

    from recloop.training.evaluation import evaluate
    from recloop.training.models import make

    # Item 0 is everyone's favourite; user 0 had it and clicks it again in the test.
    train = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32))
    pop = make("popularity").fit(train)
    users = np.array([0])
    assert evaluate(pop, train, test, k=1, users=users).metrics["recall@1"] == 0.0
    allowed = evaluate(pop, train, test, k=1, users=users, exclude_seen=False)
    assert allowed.metrics["recall@1"] == 1.0
    with pytest.raises(TrainError, match="repeats"):
        replace(BASE, repeats="sometimes").validate()
