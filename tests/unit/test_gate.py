"""The champion/challenger gate: margin AND bootstrap lower bound, evidence, registry effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recloop.registry import ModelStatus, registry_from_uri
from recloop.registry.gate import BundleOnItems, GateConfig, GateDecision, apply, decide
from recloop.training.evaluation import EvalResult, evaluate
from training_fixtures import block_matrix, make_bundle, register_test_family, saved_bundle

CONFIG = GateConfig(metric="recall@10", margin=0.05, bootstrap_samples=500, seed=1)


@pytest.fixture(autouse=True)
def _test_family(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_family(monkeypatch)


def _result(per_user: np.ndarray) -> EvalResult:
    n = len(per_user)
    return EvalResult(
        k=10,
        metrics={"recall@10": float(per_user.mean()) if n else 0.0},
        per_user={"recall@10": per_user.astype(np.float64)},
        users=np.arange(n),
        n_train=np.ones(n, int),
        n_test=np.ones(n, int),
    )


def test_a_clear_and_certain_improvement_is_approved_with_evidence() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400) * 0.5
    decision = decide(_result(base + 0.1), _result(base), "champion v3", CONFIG)
    assert decision.approved
    assert decision.reason.startswith("approved")
    ev = decision.evidence
    assert ev["incumbent"] == "champion v3"
    assert ev["bootstrap"]["lower"] > 0
    assert ev["relative_improvement"] == pytest.approx(0.1 / base.mean(), rel=1e-6)


def test_an_improvement_below_the_margin_is_rejected_even_when_certain() -> None:
    base = np.linspace(0.2, 0.6, 400)
    decision = decide(_result(base + 0.004), _result(base), "champion", CONFIG)
    assert not decision.approved
    assert "margin" in decision.reason and "bootstrap" not in decision.reason
    assert decision.evidence["bootstrap"]["lower"] > 0


def test_a_large_but_noisy_improvement_is_rejected_on_the_bootstrap() -> None:
    rng = np.random.default_rng(3)
    base = np.full(30, 0.3)
    noisy = base + rng.normal(0.03, 0.3, size=30)
    decision = decide(_result(noisy), _result(base), "champion", CONFIG)
    assert noisy.mean() > base.mean() * 1.05
    assert not decision.approved
    assert "bootstrap lower bound" in decision.reason
    assert decision.evidence["bootstrap"]["lower"] <= 0


def test_an_equal_or_worse_model_is_rejected() -> None:
    base = np.linspace(0, 1, 100)
    for challenger in (base, base - 0.1):
        decision = decide(_result(challenger), _result(base), "popularity", CONFIG)
        assert not decision.approved


def test_from_a_zero_incumbent_any_certain_signal_counts() -> None:
    zero = np.zeros(200)
    better = np.r_[np.ones(100), np.zeros(100)]
    assert decide(_result(better), _result(zero), "popularity", CONFIG).approved
    assert not decide(_result(zero), _result(zero), "popularity", CONFIG).approved


def test_no_users_means_no_approval() -> None:
    empty = _result(np.zeros(0))
    assert not decide(empty, empty, "champion", CONFIG).approved


def test_apply_records_the_decision_and_only_approval_makes_a_champion(tmp_path: Path) -> None:
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    v1 = registry.register(saved_bundle(tmp_path / "a", seed=1), {"recall@10": 0.2}, "r1")
    v2 = registry.register(saved_bundle(tmp_path / "b", seed=2), {"recall@10": 0.1}, "r2")
    apply(registry, v1.version, GateDecision(True, "approved: better", {"lower": 0.01}))
    rejected = apply(registry, v2.version, GateDecision(False, "rejected: worse", {}))
    assert rejected.status is ModelStatus.REJECTED and rejected.reason == "rejected: worse"
    champion = registry.champion()
    assert champion is not None and champion.version == v1.version


def test_a_bundle_on_the_same_items_scores_like_the_bundle_itself() -> None:
    bundle = make_bundle(n_users=40, n_items=20, seed=0)
    train = block_matrix(40, 20, seed=0)
    test = block_matrix(40, 20, seed=9)
    test = test - test.multiply(train > 0)  # only unseen test items
    test.eliminate_zeros()
    direct = evaluate(bundle.model, train, test, k=5)
    adapted = evaluate(BundleOnItems(bundle, bundle.item_ids), train, test, k=5)
    assert adapted.metrics["recall@5"] == pytest.approx(direct.metrics["recall@5"])
    assert direct.metrics["recall@5"] > 0.2


def test_a_bundle_on_other_items_maps_columns_and_never_hits_unknown_items() -> None:
    bundle = make_bundle(n_users=40, n_items=20, seed=0)
    # Today's data: reversed column order plus two items the champion never saw.
    new_items = np.array(["new-a", *bundle.item_ids[::-1].tolist(), "new-b"])
    adapter = BundleOnItems(bundle, new_items)
    history = np.zeros((1, len(new_items)), dtype=np.float32)
    history[0, [1 + (19 - 0), 1 + (19 - 1), 0]] = 1.0  # i0, i1 and an unknown item
    import scipy.sparse as sp

    ids, _ = adapter.recommend(sp.csr_matrix(history), k=3)
    expected = bundle.recommend(bundle.history_row(["i0", "i1"]), k=3)[0]
    assert [str(new_items[i]) for i in ids[0]] == [item for item, _ in expected]
    assert np.all(ids[0] != 0) and np.all(ids[0] != len(new_items) - 1)
    # A history of only unknown items falls back to the bundle's popularity.
    cold, _ = adapter.recommend(sp.csr_matrix(np.eye(1, len(new_items), 0, dtype=np.float32)), k=2)
    assert [str(new_items[i]) for i in cold[0]] == [item for item, _ in bundle.popular(2)]
