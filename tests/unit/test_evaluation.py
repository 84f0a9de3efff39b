"""Top-K metrics against hand-computed values; sampling; paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recloop.training.evaluation import (
    EvaluationError,
    evaluate,
    paired_bootstrap,
    select_users,
)
from recloop.training.models import make


def _csr(rows: list[list[int]], n_items: int = 5) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), n_items))


# Popularity on this train ranks items 0 > 1 > 2 > 3 > 4 (4, 3, 2, 1, 0 users).
TRAIN = _csr([[0], [1], [0, 1, 2], [0, 1, 2, 3], [0]])
# u0 (history {0}) gets [1, 2]: one hit of two test items. u1 (history {1}) gets [0, 2]: none.
TEST = _csr([[1, 4], [3], [], [], []])


def test_metrics_match_hand_computed_values() -> None:
    model = make("popularity").fit(TRAIN)
    result = evaluate(model, TRAIN, TEST, k=2)
    assert result.users.tolist() == [0, 1]
    ndcg_u0 = 1 / (1 + 1 / np.log2(3))
    assert result.per_user["recall@2"].tolist() == [0.5, 0.0]
    assert result.per_user["precision@2"].tolist() == [0.5, 0.0]
    assert result.per_user["ndcg@2"] == pytest.approx([ndcg_u0, 0.0])
    assert result.per_user["map@2"].tolist() == [0.5, 0.0]
    assert result.per_user["hit_rate@2"].tolist() == [1.0, 0.0]
    assert result.metrics["recall@2"] == pytest.approx(0.25)
    assert result.metrics["ndcg@2"] == pytest.approx(ndcg_u0 / 2)
    assert result.metrics["coverage@2"] == pytest.approx(3 / 5)  # items 0, 1, 2
    assert result.n_train.tolist() == [1, 1]
    assert result.n_test.tolist() == [2, 1]


def test_a_hit_lower_in_the_list_is_worth_less_in_ndcg_and_map() -> None:
    model = make("popularity").fit(TRAIN)
    first = evaluate(model, TRAIN, _csr([[1], [], [], [], []]), k=2)  # u0's rank-1 item
    second = evaluate(model, TRAIN, _csr([[2], [], [], [], []]), k=2)  # u0's rank-2 item
    assert first.metrics["recall@2"] == second.metrics["recall@2"] == 1.0
    assert first.metrics["ndcg@2"] == 1.0
    assert second.metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert second.metrics["map@2"] == pytest.approx(0.5)


def test_popularity_is_reported_beside_on_the_same_users() -> None:
    model = make("ease", l2=1.0).fit(TRAIN)
    result = evaluate(model, TRAIN, TEST, k=2, baseline=True)
    assert result.baseline is not None
    assert np.array_equal(result.baseline.users, result.users)
    assert result.to_dict()["popularity_recall@2"] == pytest.approx(0.25)


def test_user_sampling_is_seeded_and_bounded() -> None:
    test = sp.csr_matrix(np.eye(100, 5, dtype=np.float32) + np.eye(100, 5, -5, dtype=np.float32))
    assert len(select_users(test)) == 10
    a = select_users(test, max_users=4, seed=1)
    assert len(a) == 4
    assert np.array_equal(a, select_users(test, max_users=4, seed=1))
    assert not np.array_equal(a, select_users(test, max_users=4, seed=2))


def test_bad_requests_are_evaluation_errors() -> None:
    model = make("popularity").fit(TRAIN)
    with pytest.raises(EvaluationError, match="shape"):
        evaluate(model, TRAIN, TEST[:3], k=2)
    with pytest.raises(EvaluationError, match="k must"):
        evaluate(model, TRAIN, TEST, k=0)
    with pytest.raises(EvaluationError, match="test item"):
        evaluate(model, TRAIN, TEST, k=2, users=np.array([0, 2]))


def _two_models(n_users: int = 300) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    # Half the items belong to each of two taste groups; test holds one more item of the group.
    rng = np.random.default_rng(0)
    rows_train, rows_test = [], []
    for user in range(n_users):
        group = np.arange(0, 20) if user % 2 else np.arange(20, 40)
        picks = rng.choice(group, size=6, replace=False)
        rows_train.append(picks[:5].tolist())
        rows_test.append(picks[5:].tolist())
    return _csr(rows_train, 40), _csr(rows_test, 40)


def test_paired_bootstrap_finds_a_real_difference_and_none_between_equals() -> None:
    train, test = _two_models()
    good = evaluate(make("itemknn", similarity="cosine").fit(train), train, test, k=10)
    pop = evaluate(make("popularity").fit(train), train, test, k=10)
    better = paired_bootstrap(good, pop, "recall@10", n=500, seed=3)
    assert better.mean_diff > 0
    assert 0 < better.lower < better.mean_diff < better.upper
    assert better.n_users == 300
    same = paired_bootstrap(pop, pop, "recall@10", n=200, seed=3)
    assert same.lower == same.upper == same.mean_diff == 0.0
    again = paired_bootstrap(good, pop, "recall@10", n=500, seed=3)
    assert again == better


def test_paired_bootstrap_refuses_unpaired_results_and_unknown_metrics() -> None:
    train, test = _two_models()
    model = make("popularity").fit(train)
    everyone = evaluate(model, train, test, k=10)
    some = evaluate(model, train, test, k=10, max_users=50, seed=1)
    with pytest.raises(EvaluationError, match="same users"):
        paired_bootstrap(everyone, some)
    with pytest.raises(EvaluationError, match="metric"):
        paired_bootstrap(everyone, everyone, metric="recall@5")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8))
def test_metric_invariants_hold_on_random_data(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    dense = rng.random((12, 15)) < 0.3
    held = dense & (rng.random((12, 15)) < 0.3)
    train = sp.csr_matrix((dense & ~held).astype(np.float32))
    test = sp.csr_matrix(held.astype(np.float32))
    if test.nnz == 0:
        return
    model = make("itemknn", similarity="cosine", K=5).fit(train)
    small = evaluate(model, train, test, k=k)
    large = evaluate(model, train, test, k=k + 1)
    for name, values in small.per_user.items():
        assert ((values >= 0) & (values <= 1 + 1e-12)).all(), name
    hits = small.per_user[f"precision@{k}"] * k
    assert np.allclose(hits, small.per_user[f"recall@{k}"] * small.n_test)
    assert (small.per_user[f"hit_rate@{k}"] >= (hits > 0)).all()
    assert (large.per_user[f"recall@{k + 1}"] >= small.per_user[f"recall@{k}"] - 1e-12).all()
