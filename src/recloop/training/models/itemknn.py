"""implicit's item-item nearest neighbours (cosine or BM25): score = history @ similarity.

The user vector is the history row itself, so a click changes the scores at once. The K
nearest neighbours per item are kept as a sparse items x items matrix.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recloop.training.models._common import single_threaded_blas, thread_count, weigh
from recloop.training.models.base import ModelError, Recommender

ITEMKNN_DEFAULTS: dict[str, Any] = {
    "similarity": "bm25",
    "K": 100,
    "K1": 1.2,
    "B": 0.75,
    "weighting": "raw",
    "num_threads": 0,
}
SIMILARITIES = ("cosine", "bm25")


class ItemKNN(Recommender):
    """Item-based collaborative filtering on implicit's all-pairs kNN."""

    family = "itemknn"

    def __init__(self, **params: Any) -> None:
        super().__init__(**{**ITEMKNN_DEFAULTS, **params})
        if self.params["similarity"] not in SIMILARITIES:
            raise ModelError(f"similarity must be one of {SIMILARITIES}")
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        p = self.params
        counts = weigh(interactions, p["weighting"])
        # implicit's Cosine/BM25 recommenders weigh the matrix and hand the kNN a COO matrix,
        # which it converts with a ParameterWarning; weighing here and passing CSR avoids that.
        if p["similarity"] == "bm25":
            weighted = bm25_weight(counts.T, K1=float(p["K1"]), B=float(p["B"])).T
        else:
            weighted = normalize(counts.T).T
        knn = ItemItemRecommender(K=int(p["K"]), num_threads=thread_count(int(p["num_threads"])))
        with single_threaded_blas():
            knn.fit(sp.csr_matrix(weighted, dtype=np.float64), show_progress=False)
        self.similarity = sp.csr_matrix(knn.similarity, dtype=np.float32)
        self.similarity.sort_indices()
        self.n_items = interactions.shape[1]
        return self

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        histories = weigh(self._histories(histories), self.params["weighting"])
        return np.asarray(histories.toarray(), dtype=np.float32)

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        sim = self.similarity if items is None else self.similarity[:, np.asarray(items)]
        # Histories are sparse: a sparse product touches only the rows of the items in them,
        # instead of every stored similarity (6.6 -> well under 1 ms per user at 20k items).
        scores = (sp.csr_matrix(user_vectors, dtype=np.float32) @ sim).toarray()
        return np.asarray(scores, dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity
        return {"sim_data": s.data, "sim_indices": s.indices, "sim_indptr": s.indptr}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(arrays["sim_indptr"]) - 1
        self.similarity = sp.csr_matrix(
            (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n, n)
        )
