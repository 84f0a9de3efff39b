"""A model as serving holds it: the bundle plus the candidate lists computed when it was published.

Everything a request needs is prepared here, before the model is swapped in: the neighbour
lists (memory-mapped .npy files beside the bundle, so every worker shares one copy), the IVF
index for the ANN fallback, the popularity order and the category map.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dposv

from recloop.serving.candidates.ivf import IVFIndex, build_ivf, neighbour_lists
from recloop.serving.features.base import HISTORY_WEIGHTS, HistoryEntry, ItemFeatures
from recloop.serving.features.cache import ItemTable
from recloop.training.bundle import ModelBundle
from recloop.training.models.base import ModelError, Recommender

log = logging.getLogger(__name__)

LISTS_DIR = "serving-lists-v2"
# Above this many items the lists are computed in a child process: numpy's sorting holds the
# GIL, and the worker computing them keeps serving requests meanwhile.
IN_PROCESS_LISTS_UP_TO = 20_000
N_NEIGHBOURS = 50
N_POPULAR = 500
# Chunk of one-hot histories scored at once for models without item vectors.
_SCORE_CHUNK = 256
_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class IdIndex:
    """Sorted ids and their positions (model columns / training rows), for binary search."""

    item_sorted: np.ndarray
    item_order: np.ndarray
    user_sorted: np.ndarray
    user_order: np.ndarray

    @classmethod
    def build(cls, item_ids: np.ndarray, user_ids: np.ndarray) -> IdIndex:
        item_order = np.argsort(item_ids, kind="stable")
        user_order = np.argsort(user_ids, kind="stable")
        return cls(item_ids[item_order], item_order, user_ids[user_order], user_order)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "item_sorted": self.item_sorted,
            "item_order": self.item_order,
            "user_sorted": self.user_sorted,
            "user_order": self.user_order,
        }

    def item(self, item_id: str) -> int | None:
        return _find(self.item_sorted, self.item_order, item_id)

    def user(self, user_id: str) -> int | None:
        return _find(self.user_sorted, self.user_order, user_id)


def _find(sorted_ids: np.ndarray, order: np.ndarray, key: str) -> int | None:
    pos = int(sorted_ids.searchsorted(key))
    if pos < len(sorted_ids) and sorted_ids[pos] == key:
        return int(order[pos])
    return None


# Rounded through float32, as the families' float32 matrices hold them.
_HISTORY_WEIGHTS_F32 = {name: float(np.float32(w)) for name, w in HISTORY_WEIGHTS.items()}


@dataclass(slots=True)  # per request: frozen dataclasses cost twice as much to build
class HistoryRow:
    """One actor's model input: sorted distinct item columns and their summed weights."""

    indices: np.ndarray  # int32
    data: np.ndarray  # float32
    n_items: int
    recent: tuple[int, ...] = ()  # the latest history's known items, newest first, distinct

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def csr(self) -> sp.csr_matrix:
        """The 1 x n_items csr_matrix the model families take."""
        row = sp.csr_matrix(
            (self.data, self.indices, np.array([0, len(self.indices)], dtype=np.int32)),
            shape=(1, self.n_items),
        )
        row.has_canonical_format = True
        return row


@dataclass
class ServedModel:
    """One loaded model version and its publish-time candidate lists."""

    bundle: ModelBundle
    version: str
    folder: Path
    neighbours: np.ndarray  # n_items x N_NEIGHBOURS item indices, -1 padded
    neighbour_scores: np.ndarray
    popular: np.ndarray  # item indices, most popular first
    item_vectors: np.ndarray | None
    ivf: IVFIndex | None
    category_items: dict[str, np.ndarray] = field(default_factory=dict)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    registry_uri: str | None = None
    fold_in: ALSFoldIn | None = None
    # Ids sorted, with their model positions: lookups by binary search in memory-mapped arrays
    # that every worker shares, instead of per-worker dicts (~45 MB at 100k items, 200k users).
    ids: IdIndex | None = None
    # Item metadata by index, read through from the feature store (per version: it is by index).
    items: ItemTable = field(init=False, repr=False)
    _item_ids: np.ndarray = field(init=False, repr=False)
    _trained: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ids is None:
            self.ids = IdIndex.build(self.bundle.item_ids, self.bundle.user_ids)
        # A plain ndarray view of the memory-mapped ids: np.memmap's __getitem__ costs ~3 us.
        self._item_ids = np.asarray(self.bundle.item_ids)
        self.items = ItemTable(self.n_items)
        trained = self.bundle.history
        self._trained = (
            None
            if trained is None
            else (np.asarray(trained.indptr), np.asarray(trained.indices), np.asarray(trained.data))
        )

    @property
    def n_items(self) -> int:
        return self.bundle.n_items

    @property
    def family(self) -> str:
        return self.bundle.family

    def item_id(self, index: int) -> str:
        return str(self._item_ids[index])

    def item_ids_of(self, indices: np.ndarray) -> list[str]:
        """Item ids of many positions at once (one vectorised gather)."""
        return [str(i) for i in self._item_ids[np.asarray(indices, dtype=np.int64)].tolist()]

    def index_of(self, item_id: str) -> int | None:
        assert self.ids is not None
        return self.ids.item(item_id)

    def history_row(self, history: list[HistoryEntry], user_id: str | None) -> sp.csr_matrix:
        """The model input for an actor: training history (if known) plus the latest events."""
        return self.history_parts(history, user_id).csr()

    def history_parts(self, history: list[HistoryEntry], user_id: str | None) -> HistoryRow:
        """history_row as plain arrays: this runs on every request, a csr_matrix costs ~40 us."""
        index = self.index_of
        weights: dict[int, float] = {}  # column -> summed weight, in the order first seen
        for entry in history:
            col = index(entry.item_id)
            if col is not None:
                weight = _HISTORY_WEIGHTS_F32.get(entry.event_type, 1.0)
                weights[col] = weights.get(col, 0.0) + weight
        recent = tuple(weights)
        trained = self._trained
        assert self.ids is not None
        row_index = None if user_id is None or trained is None else self.ids.user(user_id)
        if row_index is not None and trained is not None:
            indptr, indices, data = trained
            lo, hi = int(indptr[row_index]), int(indptr[row_index + 1])
            if not weights:
                cols_in = indices[lo:hi]
                if len(cols_in) < 2 or bool((cols_in[1:] > cols_in[:-1]).all()):
                    # No recent events the model knows and a sorted, distinct training row:
                    # that row is the input as it is (~10 us less than the merge below).
                    return HistoryRow(
                        np.asarray(cols_in, dtype=np.int32),
                        np.asarray(data[lo:hi], dtype=np.float32),
                        self.n_items,
                    )
            for col, value in zip(indices[lo:hi].tolist(), data[lo:hi].tolist(), strict=True):
                weights[col] = weights.get(col, 0.0) + value
        # scipy's sum_duplicates, in Python: ~25 entries cost less than np.unique's machinery.
        # Sums run in float64 in input order, as np.bincount's did, then round to float32.
        cols = sorted(weights)
        return HistoryRow(
            np.array(cols, dtype=np.int32),
            np.array([weights[c] for c in cols], dtype=np.float32),
            self.n_items,
            recent,
        )

    def user_vector(self, row: sp.csr_matrix | HistoryRow) -> np.ndarray:
        if self.fold_in is not None:
            if isinstance(row, HistoryRow):
                return self.fold_in.solve(row.indices, row.data).reshape(1, -1)
            return self.fold_in(row)
        return np.asarray(
            self.bundle.model.user_vectors(row.csr() if isinstance(row, HistoryRow) else row)
        )

    def score(self, user_vector: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.fold_in is not None:  # ALS: the same product, on a plain view of the factors
            return self.fold_in.score(user_vector, items)
        scores = self.bundle.model.score(user_vector, items)
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def load_served_model(
    folder: Path,
    version: str | None = None,
    catalogue: dict[str, ItemFeatures] | None = None,
    registry_uri: str | None = None,
) -> ServedModel:
    """Load and verify a bundle folder and compute (or reuse) its candidate lists.

    Raises ModelError when the artifact is corrupt or does not answer a smoke query; the
    caller keeps serving its previous model then.
    """
    bundle = ModelBundle.load(folder, verify=True, mmap=True)
    version = version or bundle.version or folder.name
    lists = folder / LISTS_DIR
    with file_lock(folder / ".serving-lists.lock"):
        if not (lists / "meta.json").is_file():
            if bundle.n_items > IN_PROCESS_LISTS_UP_TO:
                _publish_lists_in_child(folder)
            else:
                _publish_lists(bundle, lists)
    arrays = {
        name: np.load(lists / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        for name in json.loads((lists / "meta.json").read_text())["arrays"]
    }
    vectors = bundle.model.item_vectors()
    ivf = None
    if vectors is not None and "ivf_centroids" in arrays:
        ivf = IVFIndex(arrays["ivf_centroids"], arrays["ivf_order"], arrays["ivf_offsets"])
    served = ServedModel(
        bundle=bundle,
        version=version,
        folder=folder,
        # Plain ndarray views of the maps: indexing a np.memmap object is several times slower.
        neighbours=np.asarray(arrays["neighbours"]),
        neighbour_scores=np.asarray(arrays["neighbour_scores"]),
        popular=np.asarray(arrays["popular"]),
        item_vectors=None if vectors is None else np.asarray(vectors),
        ivf=ivf,
        category_items={},
        ids=IdIndex(
            *(
                np.asarray(arrays[n])
                for n in ("item_sorted", "item_order", "user_sorted", "user_order")
            )
        ),
        registry_uri=registry_uri,
        fold_in=ALSFoldIn.for_model(bundle.model),
    )
    served.category_items = _category_items(served, catalogue or {})
    smoke_test(served)
    return served


class ALSFoldIn:
    """ALS user vectors with the item Gram matrix computed once per model version.

    The same least-squares solve as the ALS family's `user_vectors` (training.models._common.
    fold_in), which recomputes YtY on every call: 100k x 64 factors cost ~120 ms per request
    that way, and ~0.1 ms with YtY cached. tests/unit/test_serving_model checks both agree.
    """

    def __init__(self, factors: np.ndarray, regularization: float, alpha: float, weighting: str):
        self.factors = factors
        self.alpha = alpha
        self.weighting = weighting
        n = factors.shape[1]
        gram = np.zeros((n, n))
        for start in range(0, len(factors), 8_192):  # float64 in slices: no 2x-size temporary
            block = np.asarray(factors[start : start + 8_192], dtype=np.float64)
            gram += block.T @ block
        self.base = gram + regularization * np.eye(n)

    @classmethod
    def for_model(cls, model: Recommender) -> ALSFoldIn | None:
        """The accelerator for an ALS model; None for other families."""
        if model.family != "als":
            return None
        p = model.params
        factors = np.asarray(model.item_vectors(), dtype=np.float32)
        return cls(factors, float(p["regularization"]), float(p["alpha"]), str(p["weighting"]))

    def score(self, user_vector: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The ALS family's `score` for one user: indexing a np.memmap costs ~30 us a call."""
        # take() gathers rows ~3x faster than fancy indexing (300 rows: 8 us against 22 us).
        factors = self.factors.take(np.asarray(items), axis=0)
        scores = np.asarray(user_vector, dtype=np.float32) @ factors.T
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def __call__(self, histories: sp.csr_matrix) -> np.ndarray:
        rows = histories if isinstance(histories, sp.csr_matrix) else sp.csr_matrix(histories)
        n, dims = rows.shape[0], self.base.shape[0]
        out = np.zeros((n, dims), dtype=np.float32)
        for r in range(n):
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            if lo != hi:
                out[r] = self.solve(rows.indices[lo:hi], rows.data[lo:hi])
        return out

    def solve(self, indices: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One user's vector from its history's item indices and values (float32)."""
        if not len(indices):
            return np.zeros(self.base.shape[0], dtype=np.float32)
        # weigh() on the row's values only: the family's own transform, without the copies.
        conf = self.alpha * _weighted(values, self.weighting)
        pref = (conf > 0).astype(np.float64)
        conf = np.abs(conf)
        y = self.factors.take(indices, axis=0).astype(np.float64)
        lhs = self.base + (y.T * (conf - 1.0)) @ y
        rhs = y.T @ (conf * pref)
        # lhs = the Gram matrix of the items outside the history + Y_h' diag(conf) Y_h + reg I
        # is symmetric positive definite (conf >= 0, reg > 0): a Cholesky solve, half the work
        # of np.linalg.solve's LU (9 us against 19 us at 64 factors); LU when it is not.
        _, x, info = dposv(lhs, rhs, overwrite_a=True, overwrite_b=True)
        if info != 0:
            x = np.linalg.solve(self.base + (y.T * (conf - 1.0)) @ y, y.T @ (conf * pref))
        return np.asarray(x, dtype=np.float32)


def _weighted(values: np.ndarray, weighting: str) -> np.ndarray:
    """training.models._common.weigh applied to a row's values (checked equal in tests)."""
    data = np.asarray(values, dtype=np.float32)
    if weighting == "binary":
        data = (data > 0).astype(np.float32)
    elif weighting == "log":
        data = np.log1p(np.maximum(data, 0)).astype(np.float32)
    elif weighting != "raw":
        raise ModelError(f"unknown weighting {weighting!r}")
    return data.astype(np.float64)


def one_item_row(index: int, n_items: int) -> sp.csr_matrix:
    """A 1 x n_items history holding one item."""
    return sp.csr_matrix(
        (np.ones(1, np.float32), np.array([index], np.int32), np.array([0, 1], np.int32)),
        shape=(1, n_items),
    )


def smoke_test(model: ServedModel) -> None:
    """A model must answer a one-item history with finite scores of the right shape."""
    if model.n_items == 0:
        raise ModelError(f"model {model.version} has no items")
    first = int(model.popular[0])
    row = one_item_row(first, model.n_items)
    vector = model.user_vector(row)
    probe = np.asarray(model.popular[:10], dtype=np.int64)
    scores = model.score(vector, probe)
    if scores.shape != (len(probe),) or not np.all(np.isfinite(scores)):
        raise ModelError(f"model {model.version} fails its smoke query (scores {scores[:3]})")
    if model.neighbours.shape != (model.n_items, N_NEIGHBOURS):
        raise ModelError(f"model {model.version}: neighbour lists have the wrong shape")


def _publish_lists(bundle: ModelBundle, dest: Path) -> None:
    """Compute the per-item neighbour lists and popularity order, write them atomically."""
    staging = dest.with_name(dest.name + ".tmp")
    staging.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "popular": np.argsort(-np.asarray(bundle.item_popularity), kind="stable").astype(np.int64)[
            :N_POPULAR
        ]
    }
    vectors = bundle.model.item_vectors()
    if vectors is not None:
        unit = np.asarray(vectors, dtype=np.float32)
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        ivf = build_ivf(unit)
        ids, sims = neighbour_lists(unit, ivf, N_NEIGHBOURS)
        arrays |= {
            "ivf_centroids": ivf.centroids,
            "ivf_order": ivf.order,
            "ivf_offsets": ivf.offsets,
        }
    else:
        ids, sims = _scored_neighbours(bundle)
    arrays |= {"neighbours": ids, "neighbour_scores": sims}
    arrays |= IdIndex.build(np.asarray(bundle.item_ids), np.asarray(bundle.user_ids)).arrays()
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    (staging / "meta.json").write_text(json.dumps({"arrays": sorted(arrays)}))
    staging.rename(dest)
    log.info("published candidate lists for %d items into %s", bundle.n_items, dest)


def _publish_lists_in_child(folder: Path) -> None:
    cmd = [sys.executable, "-m", "recloop.serving.model", str(folder)]
    # One BLAS thread: the child lowers its own priority (below), and BLAS threads started at
    # import would keep the default one and compete with the workers for the cores.
    env = {**os.environ, **{name: "1" for name in _BLAS_THREAD_VARS}}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise ModelError(f"computing candidate lists for {folder} failed: {done.stderr[-500:]}")


def _scored_neighbours(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours from the model's own scores of one-item histories (models without vectors)."""
    n = bundle.n_items
    ids = np.full((n, N_NEIGHBOURS), -1, dtype=np.int32)
    sims = np.full((n, N_NEIGHBOURS), -np.inf, dtype=np.float32)
    model = bundle.model
    for start in range(0, n, _SCORE_CHUNK):
        rows = np.arange(start, min(n, start + _SCORE_CHUNK))
        onehot = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)), shape=(len(rows), n)
        )
        top, scores = model.recommend(onehot, k=N_NEIGHBOURS, exclude_seen=True)
        width = top.shape[1]
        ids[rows, :width] = top
        sims[rows, :width] = np.where(top >= 0, scores, -np.inf)
    return ids, sims


def _category_items(
    model: ServedModel, catalogue: dict[str, ItemFeatures]
) -> dict[str, np.ndarray]:
    """Category -> the model's item indices in it (for category-filtered requests)."""
    if not catalogue or model.ids is None:
        return {}
    names = list(catalogue)
    keys = np.asarray(names)  # own width: casting could truncate a longer id into a match
    pos = np.minimum(np.searchsorted(model.ids.item_sorted, keys), len(model.ids.item_sorted) - 1)
    found = model.ids.item_sorted[pos] == keys
    groups: dict[str, list[int]] = {}
    for name, ok, at in zip(names, found.tolist(), pos.tolist(), strict=True):
        if ok:
            index = int(model.ids.item_order[at])
            for category in catalogue[name].categories:
                groups.setdefault(category, []).append(index)
    return {c: np.asarray(sorted(v), dtype=np.int64) for c, v in groups.items()}


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive file lock, so that one worker computes the lists and the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_in_idle_time() -> None:
    """Let this thread (and the threads it starts) run only when a core is otherwise idle.

    Linux's SCHED_IDLE: a worker that wakes up preempts it at once, where nice 10 still took
    ~10% of a busy core and p99 during swaps was 2.2-2.8x the steady one. Elsewhere: nice 10.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(10)


if __name__ == "__main__":  # the child process of _publish_lists_in_child
    # Background work: the workers serving requests on the same cores come first.
    run_in_idle_time()
    _target = Path(sys.argv[1])
    _publish_lists(ModelBundle.load(_target, verify=False), _target / LISTS_DIR)
