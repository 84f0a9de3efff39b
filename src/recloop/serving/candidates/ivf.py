"""A small inverted-file (IVF) vector index in numpy: k-means lists, probe the nearest few.

Used for two things: computing every item's neighbour list at publish time without an
all-pairs scan (queries of one list share their probe lists, so the work is a series of small
dense products), and as the ANN fallback for a user vector when no list covers the request.
Exact when there is a single list (small catalogues).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Catalogues up to this size are scanned exactly; above it, sqrt(n) lists.
EXACT_UP_TO = 4_096
_KMEANS_ITERATIONS = 8
_KMEANS_SAMPLE = 50_000


@dataclass(frozen=True)
class IVFIndex:
    centroids: np.ndarray  # nlist x d, float32
    order: np.ndarray  # item indices grouped by list
    offsets: np.ndarray  # nlist + 1 boundaries into `order`

    @property
    def nlist(self) -> int:
        return len(self.centroids)

    def members(self, lists: np.ndarray) -> np.ndarray:
        """The item indices of the given lists, concatenated."""
        parts = [self.order[self.offsets[c] : self.offsets[c + 1]] for c in lists]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def search(
        self, vectors: np.ndarray, query: np.ndarray, k: int, nprobe: int = 8
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by inner product for one query vector, among the nprobe nearest lists."""
        if self.nlist == 1:  # small catalogue: one exact scan, no gather
            items = self.order
            scores = vectors @ query
        else:
            items = self.members(_top(self.centroids @ query, min(nprobe, self.nlist)))
            scores = vectors[items] @ query
        best = _top(scores, min(k, len(items)))
        return items[best], scores[best]


def build_ivf(unit_vectors: np.ndarray, seed: int = 0) -> IVFIndex:
    """k-means lists over row-normalised vectors (one list when the catalogue is small)."""
    n = len(unit_vectors)
    if n <= EXACT_UP_TO:
        centroid = unit_vectors.mean(axis=0, keepdims=True).astype(np.float32)
        return IVFIndex(centroid, np.arange(n, dtype=np.int64), np.array([0, n], dtype=np.int64))
    nlist = int(np.sqrt(n))
    rng = np.random.default_rng(seed)
    sample = unit_vectors[rng.choice(n, size=min(n, _KMEANS_SAMPLE), replace=False)]
    centroids = sample[rng.choice(len(sample), size=nlist, replace=False)].copy()
    for _ in range(_KMEANS_ITERATIONS):
        assign = np.argmax(sample @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, sample)
        counts = np.bincount(assign, minlength=nlist)[:, None]
        # An empty list keeps its old centroid rather than collapsing to zero.
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    assign = np.concatenate(
        [np.argmax(chunk @ centroids.T, axis=1) for chunk in _chunks(unit_vectors, 16_384)]
    )
    order = np.argsort(assign, kind="stable").astype(np.int64)
    offsets = np.searchsorted(assign[order], np.arange(nlist + 1)).astype(np.int64)
    return IVFIndex(centroids.astype(np.float32), order, offsets)


def neighbour_lists(
    unit_vectors: np.ndarray, index: IVFIndex, n: int, nprobe: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's n most similar other items (cosine), -1 / -inf padded; list by list."""
    total = len(unit_vectors)
    ids = np.full((total, n), -1, dtype=np.int32)
    sims = np.full((total, n), -np.inf, dtype=np.float32)
    centroid_sims = index.centroids @ index.centroids.T
    for c in range(index.nlist):
        queries = index.order[index.offsets[c] : index.offsets[c + 1]]
        if not len(queries):
            continue
        pool = index.members(_top(centroid_sims[c], min(nprobe, index.nlist)))
        position = np.full(total, -1, dtype=np.int64)
        position[pool] = np.arange(len(pool))
        pool_vectors = unit_vectors[pool]
        # Small chunks: argpartition holds the GIL, and requests run beside a swap.
        for chunk in _chunks(queries, 256):
            scores = unit_vectors[chunk] @ pool_vectors.T
            own = position[chunk]
            inside = own >= 0
            scores[np.flatnonzero(inside), own[inside]] = -np.inf  # not its own neighbour
            k = min(n, len(pool))
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            ids[chunk, :k] = np.where(np.isfinite(top_scores), pool[top], -1)
            sims[chunk, :k] = top_scores
    return ids, sims


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first."""
    if k <= 0:
        return np.empty(0, np.int64)
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = (-scores).argpartition(k - 1)[:k]
    return part[(-scores[part]).argsort(kind="stable")]


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[i : i + size] for i in range(0, len(array), size)]


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Public form of the top-k helper: indices of the k largest scores, best first."""
    return _top(scores, k)
