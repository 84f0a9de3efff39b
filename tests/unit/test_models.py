"""One behavioural suite run against every model family on data whose answer is known.

Two categories: A = items 0..9, B = items 10..19. B is the more popular category (twice the
users), so a model that ignores the user's history would recommend B to everybody; a
personalised model must recommend A to a user who clicked only A.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.training.models import FAMILIES, ModelError, Recommender, make
from recloop.training.models._common import fold_in, thread_count

N_ITEMS = 20
A = np.arange(10)
B = np.arange(10, 20)

# Small, fast settings per family (BPR is single-threaded by default, to be reproducible).
# The data has rank 2 (two categories): ALS with more factors memorises each user's random
# picks and, for some seeds, ranks a B item above an unclicked A item, a fair answer for its fit.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "als": ("als", {"factors": 2, "iterations": 15, "regularization": 1.0, "alpha": 10.0}),
    "bpr": ("bpr", {"factors": 8, "iterations": 200, "regularization": 0.1}),
    "itemknn-bm25": ("itemknn", {"similarity": "bm25", "K": 10}),
    "itemknn-cosine": ("itemknn", {"similarity": "cosine", "K": 10}),
    "ease": ("ease", {"l2": 10.0}),
    "popularity": ("popularity", {}),
    "popularity_recent": ("popularity_recent", {"half_life_days": 3.0}),
}
PERSONALISED = [name for name, (family, _) in CASES.items() if not family.startswith("popul")]


def _interactions(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(90):
        category = A if user < 30 else B
        picks = rng.choice(category, size=5, replace=False)
        rows += [user] * len(picks)
        cols += picks.tolist()
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(90, N_ITEMS))
    ages = matrix.copy()
    ages.data = rng.uniform(0.1, 30.0, size=matrix.nnz).astype(np.float32)
    return matrix, ages


def _history(items: list[int], weights: list[float] | None = None) -> sp.csr_matrix:
    data = np.ones(len(items), np.float32) if weights is None else np.asarray(weights, np.float32)
    return sp.csr_matrix((data, ([0] * len(items), items)), shape=(1, N_ITEMS))


@pytest.fixture(scope="module")
def fitted() -> dict[str, Recommender]:
    matrix, ages = _interactions()
    return {name: make(fam, **params).fit(matrix, ages) for name, (fam, params) in CASES.items()}


def test_every_family_is_registered_and_in_this_suite() -> None:
    suite_families = {family for family, _ in CASES.values()}
    real = {name for name in FAMILIES if not name.startswith("test_")}
    assert real == suite_families


@pytest.mark.parametrize("name", PERSONALISED)
def test_a_user_who_clicked_only_category_a_is_recommended_category_a(
    fitted: dict[str, Recommender], name: str
) -> None:
    ids, scores = fitted[name].recommend(_history([0, 1, 2]), k=5)
    assert set(ids[0].tolist()) <= set(A.tolist()), ids
    assert np.all(np.diff(scores[0]) <= 0)


@pytest.mark.parametrize("name", ["popularity", "popularity_recent"])
def test_popularity_recommends_the_most_popular_unseen_items(
    fitted: dict[str, Recommender], name: str
) -> None:
    model = fitted[name]
    ids, _ = model.recommend(_history([0]), k=3)
    scores = model.score(model.user_vectors(_history([0])))[0]
    scores[0] = -np.inf
    assert ids[0].tolist() == np.argsort(-scores, kind="stable")[:3].tolist()
    # B has twice A's users: B items lead the global ranking.
    if name == "popularity":
        assert set(ids[0].tolist()) <= set(B.tolist())


def test_recent_popularity_prefers_items_with_recent_interactions() -> None:
    matrix = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float32))
    ages = matrix.copy()
    ages.data = np.array([30.0, 1.0, 30.0, 1.0], dtype=np.float32)  # item 1: recent
    model = make("popularity_recent", half_life_days=2.0).fit(matrix, ages)
    ids, _ = model.recommend(sp.csr_matrix((1, 2), dtype=np.float32), k=2)
    assert ids[0].tolist() == [1, 0]
    with pytest.raises(ModelError, match="ages"):
        make("popularity_recent").fit(matrix)


@pytest.mark.parametrize("name", list(CASES))
def test_seen_items_are_excluded_and_short_lists_pad(
    fitted: dict[str, Recommender], name: str
) -> None:
    history = _history([0, 3, 12])
    ids, scores = fitted[name].recommend(history, k=N_ITEMS)
    assert not {0, 3, 12} & set(ids[0][ids[0] >= 0].tolist())
    assert ids[0][-3:].tolist() == [-1, -1, -1]
    assert np.isneginf(scores[0][-3:]).all()
    kept, _ = fitted[name].recommend(history, k=N_ITEMS, exclude_seen=False)
    assert (kept[0] >= 0).all()


@pytest.mark.parametrize("name", PERSONALISED)
def test_new_clicks_change_the_recommendations_at_once(
    fitted: dict[str, Recommender], name: str
) -> None:
    model = fitted[name]
    before, _ = model.recommend(_history([0, 1]), k=5)
    after, _ = model.recommend(_history([0, 1, 10, 11, 12]), k=5)
    assert before[0].tolist() != after[0].tolist()
    assert set(after[0].tolist()) & set(B.tolist()), after


@pytest.mark.parametrize("name", ["popularity", "popularity_recent"])
def test_a_new_click_removes_the_item_from_popularity_recommendations(
    fitted: dict[str, Recommender], name: str
) -> None:
    model = fitted[name]
    before, _ = model.recommend(_history([0]), k=3)
    top = int(before[0][0])
    after, _ = model.recommend(_history([0, top]), k=3)
    assert top not in after[0].tolist()


@pytest.mark.parametrize("name", list(CASES))
def test_save_load_roundtrip_gives_identical_scores(
    fitted: dict[str, Recommender], name: str, tmp_path: Path
) -> None:
    model = fitted[name]
    histories = sp.vstack([_history([0, 1]), _history([15]), _history([])]).tocsr()
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.params == model.params
    expected = model.score(model.user_vectors(histories))
    assert np.array_equal(loaded.score(loaded.user_vectors(histories)), expected)
    ids, _ = loaded.recommend(histories, k=4)
    assert np.array_equal(ids, model.recommend(histories, k=4)[0])


@pytest.mark.parametrize("name", list(CASES))
def test_a_corrupted_artifact_fails_to_load(
    fitted: dict[str, Recommender], name: str, tmp_path: Path
) -> None:
    folder = fitted[name].save(tmp_path / "m")
    array = sorted(folder.glob("*.npy"))[0]
    raw = bytearray(array.read_bytes())
    raw[-1] ^= 0xFF
    array.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="checksum"):
        Recommender.load(folder)
    array.unlink()
    with pytest.raises(ModelError):
        Recommender.load(folder)


def test_an_unreadable_model_json_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ModelError):
        Recommender.load(tmp_path)
    with pytest.raises(ModelError):
        Recommender.load(tmp_path / "absent")


@pytest.mark.parametrize("name", list(CASES))
def test_same_inputs_and_seed_give_the_same_model(name: str) -> None:
    family, params = CASES[name]
    matrix, ages = _interactions()
    histories = matrix[:10]
    one = make(family, **params).fit(matrix, ages)
    two = make(family, **params).fit(matrix, ages)
    assert np.array_equal(
        one.score(one.user_vectors(histories)), two.score(two.user_vectors(histories))
    )


@pytest.mark.parametrize("name", list(CASES))
def test_unfitted_or_mismatched_input_is_a_model_error(
    fitted: dict[str, Recommender], name: str
) -> None:
    family, params = CASES[name]
    with pytest.raises(ModelError, match="not fitted"):
        make(family, **params).recommend(_history([0]))
    with pytest.raises(ModelError, match="items"):
        fitted[name].recommend(sp.csr_matrix((1, N_ITEMS + 1), dtype=np.float32))


def test_unknown_family_and_bad_params_are_refused() -> None:
    with pytest.raises(ModelError, match="unknown model family"):
        make("nope")
    with pytest.raises(ModelError):
        make("itemknn", similarity="jaccard")
    with pytest.raises(ModelError):
        make("ease", max_items=5).fit(_interactions()[0])
    with pytest.raises(ModelError):
        make("als", weighting="sqrt").fit(_interactions()[0])


def test_als_fold_in_matches_implicit_recalculate_user() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    matrix, _ = _interactions()
    matrix = matrix.multiply(np.arange(1, N_ITEMS + 1, dtype=np.float32)[None, :] / 4).tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # implicit's BLAS-threads advice
        als = AlternatingLeastSquares(factors=6, regularization=0.2, alpha=3.0, random_state=1)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        als.fit(matrix, show_progress=False)
        expected = als.recalculate_user(np.arange(5), matrix[:5])
    got = fold_in(als.item_factors, matrix[:5], regularization=0.2, alpha=3.0)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_als_cached_gram_follows_a_refit() -> None:
    params = CASES["als"][1]
    first, _ = _interactions(seed=0)
    second, _ = _interactions(seed=1)
    model = make("als", **params).fit(first)
    model.user_vectors(_history([0, 1]))  # fills the cache from the first fit
    model.fit(second)
    fresh = make("als", **params).fit(second)
    assert np.array_equal(
        model.user_vectors(_history([0, 1])), fresh.user_vectors(_history([0, 1]))
    )


def test_ease_matches_its_closed_form() -> None:
    matrix, _ = _interactions()
    l2, dropout = 10.0, 0.25
    model = make("ease", l2=l2, dropout=dropout, weighting="binary").fit(matrix)
    x = matrix.toarray().astype(np.float64)
    gram = x.T @ x
    gram += np.diag(l2 + dropout / (1 - dropout) * np.diag(gram))
    precision = np.linalg.inv(gram)
    expected = precision / -np.diag(precision)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights, expected, atol=1e-5)


def test_thread_count_zero_means_all_available_cores() -> None:
    assert thread_count(0) >= 1
    assert thread_count(3) == 3
    with pytest.raises(ModelError):
        thread_count(-1)


def test_top_k_takes_the_k_best_and_breaks_ties_at_the_cut_towards_the_lower_index() -> None:
    from recloop.training.models.base import _top_k

    rng = np.random.default_rng(0)
    for trial in range(200):
        n, rows = int(rng.integers(1, 50)), int(rng.integers(1, 20))
        k = int(rng.integers(1, n + 1))
        # Few distinct values (many ties, some rows tied across the cut) and excluded items.
        scores = rng.integers(0, 4, (rows, n)).astype(np.float32)
        scores[rng.random((rows, n)) < 0.3] = -np.inf
        # The reference: sort by score descending, then index ascending; keep k, by index.
        order = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)
        expected = np.sort(order[:, :k], axis=1)
        assert (_top_k(scores, k) == expected).all(), trial


@pytest.mark.parametrize("family", ["popularity", "popularity_recent"])
def test_popularity_shortcut_answers_exactly_as_the_generic_recommend(family: str) -> None:
    """Popularity ranks once and walks the ranking; the generic path scores every item and
    takes the top k. Same ids, scores and padding, ties included."""
    rng = np.random.default_rng(1)
    for trial in range(100):
        n_users, n_items = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        dense = (rng.random((60, n_items)) < 0.2) * rng.integers(1, 4, (60, n_items))
        model = make(family).fit(
            sp.csr_matrix(dense, dtype=np.float32), sp.csr_matrix(dense, dtype=np.float32)
        )
        # Histories: empty rows, rows that saw almost everything, explicit zeros (not seen).
        seen = rng.random((n_users, n_items)) < rng.choice([0.0, 0.1, 0.5, 0.95], (n_users, 1))
        values = np.where(seen, rng.choice([1.0, 2.0], seen.shape), 0.0).astype(np.float32)
        histories = sp.csr_matrix(values)
        if histories.nnz and trial % 3 == 0:
            histories.data[0] = 0.0  # stored, but not a positive interaction
        for k in (1, 3, 10, n_items + 2):
            for exclude_seen in (True, False):
                got = model.recommend(histories, k=k, exclude_seen=exclude_seen)
                want = Recommender.recommend(model, histories, k=k, exclude_seen=exclude_seen)
                assert np.array_equal(got[0], want[0]), (trial, k, exclude_seen)
                assert np.array_equal(got[1], want[1]), (trial, k, exclude_seen)
