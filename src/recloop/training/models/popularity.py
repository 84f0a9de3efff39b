"""Popularity: global (distinct users per item) and recent (each user's latest interaction
with an item decayed by its age, with a half-life). The baseline every model is reported beside.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recloop.training.models.base import ModelError, Recommender


class Popularity(Recommender):
    """Items ranked by how many users interacted with them; the same for everyone."""

    family = "popularity"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.popularity = np.zeros(0, dtype=np.float32)

    def _item_weights(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None) -> np.ndarray:
        del ages  # global popularity counts every interaction alike
        binary = sp.csc_matrix(interactions, dtype=np.float32)
        binary.eliminate_zeros()
        counts: np.ndarray = np.diff(binary.indptr).astype(np.float32)
        return counts

    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        interactions = sp.csr_matrix(interactions, dtype=np.float32)
        weights = self._item_weights(interactions, ages)
        self.popularity = weights.astype(np.float32)
        self.n_items = interactions.shape[1]
        return self

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """Everyone is the same vector: the history does not change the ranking."""
        histories = self._histories(histories)
        return np.ones((histories.shape[0], 1), dtype=np.float32)

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        pop = self.popularity if items is None else self.popularity[np.asarray(items)]
        return np.asarray(user_vectors, dtype=np.float32)[:, :1] * pop[None, :]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity = arrays["popularity"]


class RecentPopularity(Popularity):
    """Popularity where each (user, item) counts 2^(-age / half_life_days)."""

    family = "popularity_recent"
    needs_ages = True

    def __init__(self, half_life_days: float = 7.0, **params: Any) -> None:
        if not half_life_days > 0:
            raise ModelError(f"half_life_days must be > 0, got {half_life_days}")
        super().__init__(half_life_days=half_life_days, **params)
        self.half_life_days = float(half_life_days)

    def _item_weights(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None) -> np.ndarray:
        if ages is None or ages.shape != interactions.shape or ages.nnz != interactions.nnz:
            raise ModelError("recent popularity needs the ages matrix of the interactions")
        decayed = sp.csr_matrix(ages, dtype=np.float64, copy=True)
        decayed.data = np.exp2(-decayed.data / self.half_life_days)
        return np.asarray(decayed.sum(axis=0)).ravel().astype(np.float32)
