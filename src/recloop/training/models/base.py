"""The one small contract every model family implements.

A model is fitted on a users x items CSR matrix of interaction weights. At serving time it never
needs the training matrix: a user is represented by their latest history (a sparse row over the
model's items), from which the model computes a user vector, so a click counts at once.

Artifacts are a folder with one `<name>.npy` per array (loaded with allow_pickle=False and
memory-mapped, so that serving workers share one copy in the page cache) and `model.json`
(family, params, shapes, a checksum per array).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recloop.errors import RecloopError


class ModelError(RecloopError):
    """A model could not be fitted, saved, loaded or verified."""


class Recommender(ABC):
    """Base contract: fit / user_vector / score / recommend / save / load."""

    family: ClassVar[str]
    # True for families whose fit needs the ages matrix (recent popularity).
    needs_ages: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = params
        self.n_items = 0

    # --- the four things a family implements -------------------------------------------

    @abstractmethod
    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        """Learn from a users x items matrix of float32 interaction weights.

        `ages` (same shape and sparsity, days since the latest interaction) is used by
        recency-aware families and ignored by the others.
        """

    @abstractmethod
    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """One representation per history row (n x n_items): factors, or the row itself."""

    @abstractmethod
    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores (n x len(items), or n x n_items when items is None)."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The arrays that make up the fitted model (one .npy each)."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted model from `_arrays()`'s output."""

    def _histories(self, histories: sp.csr_matrix) -> sp.csr_matrix:
        """Histories as float32 CSR over this model's items, or a ModelError."""
        self._check_fitted()
        histories = sp.csr_matrix(histories, dtype=np.float32)
        if histories.shape[1] != self.n_items:
            raise ModelError(
                f"histories have {histories.shape[1]} items, the model has {self.n_items}"
            )
        return histories

    def _check_fitted(self) -> None:
        if self.n_items == 0:
            raise ModelError(f"{self.family} model is not fitted")

    # --- shared behaviour -----------------------------------------------------------------

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings for a vector index (None for models without them)."""
        return None

    def recommend(
        self,
        histories: sp.csr_matrix,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per history row, best first.

        `items` restricts the answer to candidate item indices; seen items are excluded unless
        `exclude_seen` is False. Rows with fewer than k eligible items pad with -1 / -inf.
        """
        histories = self._histories(histories)
        scores = self.score(self.user_vectors(histories), items).astype(np.float32, copy=True)
        candidates = np.arange(self.n_items) if items is None else np.asarray(items)
        if exclude_seen and items is None:
            # Straight from the CSR structure: column-slicing a sparse matrix costs ms per call.
            rows = np.repeat(np.arange(histories.shape[0]), np.diff(histories.indptr))
            positive = histories.data > 0
            scores[rows[positive], histories.indices[positive]] = -np.inf
        elif exclude_seen:
            seen = histories[:, candidates].toarray() > 0
            scores[seen] = -np.inf
        k = min(k, scores.shape[1])
        if k <= 0:
            return np.empty((len(scores), 0), np.int64), np.empty((len(scores), 0), np.float32)
        top = _top_k(scores, k)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        ids = np.where(np.isfinite(top_scores), candidates[top], -1)
        return ids, top_scores

    def save(self, folder: Path) -> Path:
        """Write one .npy per array and model.json into `folder`; returns the folder."""
        folder.mkdir(parents=True, exist_ok=True)
        checksums = {}
        shapes = {}
        for name, array in self._arrays().items():
            path = folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            checksums[name] = _sha256(path)
            shapes[name] = list(array.shape)
        meta = {
            "family": self.family,
            "params": self.params,
            "n_items": self.n_items,
            "shapes": shapes,
            "sha256": checksums,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: Path, verify: bool = True) -> Recommender:
        """Load any family from a folder written by `save`, checking checksums and shapes."""
        from recloop.training.models import FAMILIES

        try:
            meta = json.loads((folder / "model.json").read_text())
            family = FAMILIES.get(meta.get("family", ""))
            if family is None:
                raise ModelError(f"unknown model family {meta.get('family')!r} in {folder}")
            arrays = {}
            for name, shape in meta["shapes"].items():
                path = folder / f"{name}.npy"
                if verify and _sha256(path) != meta["sha256"][name]:
                    raise ModelError(f"array {name!r} in {folder} fails its checksum")
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
                if list(arrays[name].shape) != shape:
                    raise ModelError(f"array {name!r} in {folder} does not have shape {shape}")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot read model artifact in {folder}: {exc}") from exc
        model = family(**meta.get("params", {}))
        model.n_items = int(meta["n_items"])
        model._restore(arrays)
        return model


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k best scores, ascending by index.

    Ties at the cut are broken towards the lower index, so the answer does not depend on
    argpartition's internal order (popularity, for one, has many equal scores). argpartition
    picks k columns per row; only rows where the k-th value also occurs outside them (its ties
    straddle the cut) need the index rule, applied to those rows alone.
    """
    n = scores.shape[1]
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    values = np.take_along_axis(scores, part, axis=1)
    kth = values.min(axis=1)[:, None]
    inside = np.count_nonzero(values == kth, axis=1)
    straddle = np.flatnonzero(np.count_nonzero(scores == kth, axis=1) > inside)
    out = np.sort(part, axis=1)
    if len(straddle):
        rows, cut = scores[straddle], kth[straddle]
        chosen = rows > cut
        need = k - np.count_nonzero(chosen, axis=1)
        # The tied columns, row-major (ascending index within a row): keep each row's first
        # `need` of them, ranked by their position after the row's first tie.
        # (flatnonzero on the raveled mask: 2-D np.nonzero is several times slower.)
        r, c = np.divmod(np.flatnonzero(rows == cut), n)
        rank = np.arange(len(r)) - np.searchsorted(r, np.arange(len(straddle)))[r]
        keep = rank < need[r]
        chosen[r[keep], c[keep]] = True
        out[straddle] = (np.flatnonzero(chosen) % n).reshape(len(straddle), k)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
