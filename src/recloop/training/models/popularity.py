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
        # (items by score descending, ties by the lower index; each item's position): lazy
        self._ranking: tuple[np.ndarray, np.ndarray] | None = None

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
        self._ranking = None
        self.n_items = interactions.shape[1]
        return self

    def recommend(
        self,
        histories: sp.csr_matrix,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`Recommender.recommend`'s answer without scoring every item for every user.

        Everyone shares one ranking (score descending, ties by the lower index, as the generic
        top-k breaks them), so a user's top k is the first k items of it they have not seen:
        only the first k + (their seen items) positions are looked at.
        """
        if items is not None:
            return super().recommend(histories, k, exclude_seen, items)
        histories = self._histories(histories)
        n_users = histories.shape[0]
        k = min(k, self.n_items)
        if k <= 0:
            return np.empty((n_users, 0), np.int64), np.empty((n_users, 0), np.float32)
        if self._ranking is None:
            order = np.argsort(-self.popularity, kind="stable")
            position = np.empty(self.n_items, dtype=np.int64)
            position[order] = np.arange(self.n_items)
            self._ranking = order, position
        order, position = self._ranking
        rows = np.repeat(np.arange(n_users), np.diff(histories.indptr))
        positive = histories.data > 0 if exclude_seen else np.zeros(histories.nnz, dtype=bool)
        rows, ranks = rows[positive], position[histories.indices[positive]]
        most_seen = int(np.bincount(rows, minlength=1).max()) if len(rows) else 0
        width = min(self.n_items, k + most_seen)
        # seen[u, j]: user u has seen the item at ranking position j (< width).
        near = ranks < width
        seen = np.zeros((n_users, width), dtype=bool)
        seen[rows[near], ranks[near]] = True
        # Keep each row's first k unseen positions; rows with fewer pad with -1 / -inf.
        take = ~seen & (np.cumsum(~seen, axis=1) <= k)
        counts = take.sum(axis=1)
        ids = np.full((n_users, k), -1, dtype=np.int64)
        scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        slot = np.arange(k)[None, :] < counts[:, None]
        picked = order[np.flatnonzero(take) % width]
        ids[slot] = picked
        scores[slot] = self.popularity[picked]
        return ids, scores

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
        self._ranking = None


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
