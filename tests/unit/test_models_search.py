"""Budgeted, seeded hyperparameter search per family, and trying every family."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.training.search import (
    SEARCH_SPACES,
    SearchError,
    Trial,
    candidate_params,
    refit,
    search,
    train_all,
)

Matrices = tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]


def _groups(seed: int = 0, n_users: int = 120) -> Matrices:
    """Two taste groups; validation holds each user's next item of their group."""
    rng = np.random.default_rng(seed)
    train_rows, val_rows = [], []
    for user in range(n_users):
        group = np.arange(0, 15) if user % 3 else np.arange(15, 30)
        picks = rng.choice(group, size=6, replace=False)
        train_rows.append(picks[:5])
        val_rows.append(picks[5:])

    def csr(rows: list[np.ndarray]) -> sp.csr_matrix:
        r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
        c = np.concatenate(rows)
        return sp.csr_matrix((np.ones(len(c), np.float32), (r, c)), shape=(len(rows), 30))

    train = csr(train_rows)
    ages = train.copy()
    ages.data = rng.uniform(0.5, 20, train.nnz).astype(np.float32)
    return train, csr(val_rows), ages


def test_candidates_start_with_the_defaults_and_are_distinct_and_seeded() -> None:
    first = candidate_params("ease", budget=5, seed=1)
    assert first[0] == {}
    assert len(first) == 5
    assert len({tuple(sorted(p.items())) for p in first}) == 5
    assert all(set(p) <= set(SEARCH_SPACES["ease"]) for p in first)
    assert candidate_params("ease", 5, seed=1) == first
    assert candidate_params("ease", 5, seed=2) != first
    assert candidate_params("popularity", budget=5, seed=0) == [{}]  # nothing to tune


def test_bad_search_requests_are_refused() -> None:
    with pytest.raises(SearchError, match="unknown"):
        candidate_params("nope", 3, 0)
    with pytest.raises(SearchError, match="budget"):
        candidate_params("ease", 0, 0)
    train, _, _ = _groups()
    with pytest.raises(SearchError, match="no user"):
        search("ease", train, sp.csr_matrix(train.shape, dtype=np.float32))


def test_search_returns_the_best_trial_on_validation() -> None:
    train, val, _ = _groups()
    seen: list[Trial] = []
    result = search("itemknn", train, val, budget=4, seed=0, on_trial=seen.append)
    assert len(result.trials) == 4
    assert seen == result.trials
    assert result.score == max(t.metrics["recall@10"] for t in result.trials)
    assert result.params == next(t.params for t in result.trials if t.metrics == result.metrics)
    assert result.model.params == result.params


def test_train_all_ranks_families_by_the_primary_metric() -> None:
    train, val, ages = _groups()
    families = ["popularity", "popularity_recent", "ease", "itemknn"]
    results = train_all(train, val, families, budget=2, seed=0, ages=ages)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0].family in {"ease", "itemknn"}
    assert results[0].score > next(r.score for r in results if r.family == "popularity")


def test_train_all_skips_recency_families_without_ages_unless_named() -> None:
    train, val, _ = _groups()
    results = train_all(train, val, budget=1, seed=0, fixed={"*": {"num_threads": 1}}, max_users=30)
    assert {r.family for r in results} == set(SEARCH_SPACES) - {"popularity_recent"}
    assert all(r.params.get("num_threads", 1) == 1 for r in results)
    with pytest.raises(SearchError, match="ages"):
        train_all(train, val, ["popularity_recent"], budget=1)


def test_same_seed_same_search_and_refit_uses_the_chosen_params() -> None:
    train, val, _ = _groups()
    one = search("als", train, val, budget=3, seed=5, fixed={"iterations": 3, "factors": 8})
    two = search("als", train, val, budget=3, seed=5, fixed={"iterations": 3, "factors": 8})
    assert one.params == two.params
    assert one.metrics == two.metrics
    assert one.params["random_state"] == 5
    full = (train + val).tocsr()
    final = refit(one, full)
    assert final.params == one.params
    assert final.n_items == full.shape[1]
