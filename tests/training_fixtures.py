"""Test helpers for training, bundles and the registry (importable: tests/ is on sys.path).

`CooccurrenceModel` is a tiny but real Recommender (item-item co-occurrence), so bundle and
registry tests do not depend on which model families happen to exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recloop.training.bundle import BundleMeta, ModelBundle
from recloop.training.models import FAMILIES
from recloop.training.models.base import Recommender


class CooccurrenceModel(Recommender):
    family = "test_cooccurrence"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.sim = np.zeros((0, 0), dtype=np.float32)

    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        binary = (sp.csr_matrix(interactions) > 0).astype(np.float32)
        sim = (binary.T @ binary).toarray()
        np.fill_diagonal(sim, 0)
        self.sim = sim.astype(np.float32)
        self.n_items = interactions.shape[1]
        return self

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        return np.asarray(sp.csr_matrix(histories, dtype=np.float32).toarray())

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(user_vectors) @ self.sim
        return scores if items is None else scores[:, items]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"sim": self.sim}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.sim = arrays["sim"]


FAMILIES.setdefault(CooccurrenceModel.family, CooccurrenceModel)


def block_matrix(n_users: int = 40, n_items: int = 20, seed: int = 0) -> sp.csr_matrix:
    """Users in two taste groups: the first half click items [0, n/2), the rest the others."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    half_items = n_items // 2
    for user in range(n_users):
        lo = 0 if user < n_users // 2 else half_items
        picks = rng.choice(np.arange(lo, lo + half_items), size=4, replace=False)
        rows += [user] * len(picks)
        cols += picks.tolist()
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))


def make_bundle(
    n_users: int = 40, n_items: int = 20, seed: int = 0, metrics: dict[str, float] | None = None
) -> ModelBundle:
    """A fitted toy bundle with ids u0.. / i0.. and a block-structured history."""
    matrix = block_matrix(n_users, n_items, seed)
    model = CooccurrenceModel(seed=seed).fit(matrix)
    return ModelBundle(
        model=model,
        item_ids=np.array([f"i{j}" for j in range(n_items)]),
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_popularity=np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel(),
        meta=BundleMeta(
            family=model.family,
            params={"seed": seed},
            train_start="2026-01-01T00:00:00+00:00",
            train_end="2026-02-01T00:00:00+00:00",
            snapshot_digest="0" * 64,
            snapshot_rows=int(matrix.nnz),
            metrics=metrics or {"recall@10": 0.5},
            run_id=f"run-{seed}",
        ),
        history=matrix,
    )


def saved_bundle(folder: Path, **kwargs: Any) -> Path:
    """make_bundle(...) saved into `folder`."""
    return make_bundle(**kwargs).save(folder)
