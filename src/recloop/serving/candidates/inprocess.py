"""The embedded CandidateSource: the lists computed at publish time, no per-request scan.

A request merges the neighbour lists of the actor's latest history items, an ANN probe with the
fresh user vector and the popular list. A scan happens only where no list exists: a
category-filtered request scores that category's items directly.
"""

from __future__ import annotations

import numpy as np

from recloop.serving.candidates.base import (
    CandidateQuery,
    Candidates,
    FirstSeen,
    Origin,
    Placement,
    merge,
)
from recloop.serving.candidates.ivf import top_indices
from recloop.serving.model import ServedModel

# The latest history items whose neighbour lists are merged.
ANCHORS = 10
NPROBE = 4


class InProcessCandidates:
    """CandidateSource over a ServedModel's own arrays (`inprocess://`)."""

    name = "inprocess"
    blocking_io = False

    def __init__(self) -> None:
        self._first_seen: FirstSeen | None = None

    def _scratch(self, n_items: int) -> FirstSeen:
        """The merge's scratch array for this catalogue size (a new one when a swap changes it)."""
        scratch = self._first_seen
        if scratch is None or scratch.n_items != n_items:
            scratch = self._first_seen = FirstSeen(n_items)
        return scratch

    def publish(self, model: ServedModel) -> None:
        # The lists are computed by load_served_model; nothing else lives outside the process.
        if model.neighbours.shape[0] != model.n_items:
            raise ValueError("neighbour lists do not match the model")

    def placement(self, model: ServedModel) -> Placement:
        return Placement.SERVED

    def candidates(self, model: ServedModel, query: CandidateQuery) -> Candidates:
        if query.category is not None:
            parts = [self._category_scan(model, query)]
        else:
            anchors = query.history[:ANCHORS]
            # take(): row gathers ~3x faster than fancy indexing.
            near = model.neighbours.take(anchors, axis=0)
            # Only positively similar neighbours: a small catalogue lists everything otherwise.
            near = np.where(model.neighbour_scores.take(anchors, axis=0) > 0, near, -1)
            parts = [
                (near.reshape(-1), Origin.NEIGHBOUR, anchors.repeat(near.shape[1])),
            ]
            # The ANN probe only where the lists do not cover the request (short or no history).
            listed = int(np.count_nonzero(near >= 0))
            if (
                listed < query.n // 2
                and query.user_vector is not None
                and model.ivf is not None
                and model.item_vectors is not None
            ):
                found, _ = model.ivf.search(
                    model.item_vectors, np.asarray(query.user_vector).reshape(-1), query.n, NPROBE
                )
                parts.append((found, Origin.VECTOR, None))
            # Popular items come last, and only as many as can make the cut: when D distinct
            # items come before them, n - D are needed, and of the first n + len(exclude)
            # popular ones at most D + len(exclude) are taken already. One merge, not a
            # second one to top up (~20 us a request).
            top_up = query.n + len(query.exclude)
            parts.append((np.asarray(model.popular[:top_up]), Origin.POPULAR, None))
        return merge(parts, query.n, query.exclude, self._scratch(model.n_items))

    def _category_scan(
        self, model: ServedModel, query: CandidateQuery
    ) -> tuple[np.ndarray, Origin, np.ndarray | None]:
        items = model.category_items.get(query.category or "", np.empty(0, np.int64))
        if query.user_vector is None or not len(items):
            popularity = np.asarray(model.bundle.item_popularity)[items]
            return items[np.argsort(-popularity, kind="stable")], Origin.POPULAR, None
        scores = model.score(np.asarray(query.user_vector), items)
        return items[top_indices(scores, len(items))], Origin.VECTOR, None

    def similar(self, model: ServedModel, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(model.neighbours[item])
        sims = np.asarray(model.neighbour_scores[item])
        keep = ids >= 0
        return ids[keep][:n].astype(np.int64), sims[keep][:n]

    def ping(self) -> None:
        return None
