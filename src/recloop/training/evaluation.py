"""Offline evaluation: top-K metrics per user, popularity beside, paired bootstrap.

The protocol: each evaluated user's training row is their history (the model computes their
vector from it, exactly as serving does), training items are excluded, and the top K is
compared with the user's test items (next-window clicks, or a random holdout).

Metrics at K, per user then averaged over users with at least one test item:
    recall     hits / |test|            the share of the next window's clicks captured
    precision  hits / K
    ndcg       DCG / ideal DCG, binary relevance, ideal over min(K, |test|) items
    map        sum of precision@rank at each hit / min(K, |test|)
    hit_rate   1 when at least one hit
    coverage   distinct recommended items / catalog size (one figure, not per user)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recloop.errors import RecloopError
from recloop.training.models._common import single_threaded_blas, thread_count
from recloop.training.models.base import Recommender
from recloop.training.models.popularity import Popularity

PER_USER_METRICS = ("recall", "precision", "ndcg", "map", "hit_rate")


class EvaluationError(RecloopError):
    """An evaluation was asked for something it cannot measure."""


@dataclass
class EvalResult:
    """Aggregate metrics (`"recall@10"`, ...), per-user vectors (same keys) and who was scored.

    `baseline` is popularity evaluated on the same users, when it was asked for.
    """

    k: int
    metrics: dict[str, float]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    n_train: np.ndarray
    n_test: np.ndarray
    baseline: EvalResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, float]:
        """Metrics, with popularity's beside as `popularity_<name>` when present."""
        out = dict(self.metrics)
        if self.baseline is not None:
            out.update({f"popularity_{k}": v for k, v in self.baseline.metrics.items()})
        return out


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of (a - b) over users and its percentile confidence interval."""

    metric: str
    mean_diff: float
    lower: float
    upper: float
    n_users: int
    confidence: float


def select_users(test: sp.csr_matrix, max_users: int | None = None, seed: int = 0) -> np.ndarray:
    """Rows with at least one test item; a seeded sample of `max_users` of them if more."""
    users = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) > 0)
    if max_users is not None and len(users) > max_users:
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(users, size=max_users, replace=False))
    return users


def evaluate(
    model: Recommender,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int = 10,
    users: np.ndarray | None = None,
    *,
    max_users: int | None = None,
    seed: int = 0,
    baseline: bool = False,
    batch_size: int = 512,
    exclude_seen: bool = True,
) -> EvalResult:
    """Score `model` at K on `users` (default: every user with a test item, sampled down to
    `max_users` with `seed`). With `baseline`, popularity fitted on `train` is scored beside.

    With `exclude_seen` (the default, as serving does) a user's `train` items are never
    recommended, so a test item the user already had counts as a positive no model can hit;
    leave such pairs out of `test` to count only discoveries, or pass False for domains where
    repeats are wanted (the pipeline's `repeats` setting chooses)."""
    train = sp.csr_matrix(train, dtype=np.float32)
    test = sp.csr_matrix(test, dtype=np.float32)
    if train.shape != test.shape:
        raise EvaluationError(f"train {train.shape} and test {test.shape} differ in shape")
    if k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    if users is None:
        users = select_users(test, max_users, seed)
    users = np.asarray(users, dtype=np.int64)
    n_test = np.diff(test.indptr)[users]
    if (n_test == 0).any():
        raise EvaluationError("every evaluated user needs at least one test item")
    result = _score(model, train, test, k, users, batch_size, exclude_seen)
    if baseline:
        pop = Popularity().fit(train)
        result.baseline = _score(pop, train, test, k, users, batch_size, exclude_seen)
    return result


def _score(
    model: Recommender,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int,
    users: np.ndarray,
    batch_size: int,
    exclude_seen: bool = True,
) -> EvalResult:
    hits = np.zeros((len(users), k), dtype=bool)
    recommended: set[int] = set()

    def one(lo: int) -> tuple[np.ndarray, np.ndarray]:
        batch = users[lo : lo + batch_size]
        ids, _ = model.recommend(train[batch], k=k, exclude_seen=exclude_seen)
        valid = ids >= 0
        rows = np.repeat(np.arange(len(batch)), ids.shape[1])
        found = np.asarray(test[batch][rows, np.where(valid, ids, 0).ravel()]).ravel() > 0
        return ids, found.reshape(ids.shape) & valid

    starts = range(0, len(users), batch_size)
    # Batches are independent: score them on every core, as the fits run (the heavy parts,
    # BLAS products and argpartition, release the GIL), with BLAS itself on one thread: its
    # own threads mostly spin on these small products (ALS at 10k users x 55k items: 3.5 CPU
    # s / 1.8 s wall with BLAS threads, 2.2 / 2.1 on one thread, 2.5 / 1.35 like this).
    # Results are gathered in batch order, so they do not depend on the scheduling.
    workers = min(thread_count(0), len(starts))
    with single_threaded_blas(), ThreadPoolExecutor(max(workers, 1)) as pool:
        for lo, (ids, found) in zip(starts, pool.map(one, starts), strict=True):
            recommended.update(np.unique(ids[ids >= 0]).tolist())
            hits[lo : lo + len(ids), : ids.shape[1]] = found
    n_test = np.diff(test.indptr)[users]
    per_user = _per_user(hits, n_test, k)
    metrics = {f"{name}@{k}": float(values.mean()) for name, values in per_user.items()}
    metrics[f"coverage@{k}"] = len(recommended) / max(test.shape[1], 1)
    per_user = {f"{name}@{k}": values for name, values in per_user.items()}
    return EvalResult(k, metrics, per_user, users, np.diff(train.indptr)[users], n_test)


def _per_user(hits: np.ndarray, n_test: np.ndarray, k: int) -> dict[str, np.ndarray]:
    n_hits = hits.sum(axis=1)
    ranks = np.arange(1, k + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    ideal_len = np.minimum(n_test, k)
    ideal = np.cumsum(discounts)[ideal_len - 1]
    precision_at = np.cumsum(hits, axis=1) / ranks
    return {
        "recall": n_hits / n_test,
        "precision": n_hits / k,
        "ndcg": (hits * discounts).sum(axis=1) / ideal,
        "map": (precision_at * hits).sum(axis=1) / ideal_len,
        "hit_rate": (n_hits > 0).astype(np.float64),
    }


def paired_bootstrap(
    a: EvalResult,
    b: EvalResult,
    metric: str = "recall@10",
    n: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Confidence interval of mean(a - b) over the same users, resampling users with `seed`.

    Both results must come from the same users (the gate evaluates champion and challenger on
    one holdout); the pairing is what makes small differences detectable.
    """
    if metric not in a.per_user or metric not in b.per_user:
        raise EvaluationError(f"metric {metric!r} has no per-user values; have {list(a.per_user)}")
    if not np.array_equal(a.users, b.users):
        raise EvaluationError("a paired bootstrap needs both results on the same users")
    if not 0 < confidence < 1 or n < 1:
        raise EvaluationError("need 0 < confidence < 1 and n >= 1")
    diff = a.per_user[metric] - b.per_user[metric]
    if len(diff) == 0:
        raise EvaluationError("no users to bootstrap over")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    # Chunks keep the n x users index matrix small for large holdouts.
    step = max(1, 2_000_000 // len(diff))
    for lo in range(0, n, step):
        size = min(step, n - lo)
        means[lo : lo + size] = diff[rng.integers(0, len(diff), (size, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(means, [tail, 1 - tail])
    return BootstrapResult(
        metric, float(diff.mean()), float(lower), float(upper), len(diff), confidence
    )
