"""A model bundle: everything serving needs to answer for one trained model, in one folder.

Layout:
    bundle.json            metadata: family, params, train window, snapshot digest, metrics, ...
    model/                 the fitted model (Recommender.save layout: model.json + one .npy each)
    item_ids.npy           item id per model column (unicode, loaded with allow_pickle=False)
    user_ids.npy           user id per training row
    item_popularity.npy    interaction count per item in the training window (cold start)
    history_*.npy          the training matrix as CSR (indptr, indices, data): batch inference
                           excludes each user's training items without reading the lake again
    holdout_*.npy          (optional) the holdout evaluation of the same configuration fitted
                           *before* the holdout: per-user metric vectors, popularity's beside,
                           the users' ids and counts (`HoldoutEvidence`). The model in model/
                           was refitted on the whole window, holdout included, so a gate that
                           decides later compares these, never the refitted model's scores.

bundle.json lists a sha256 and a shape for every array outside model/ (model.json does the same
for its own), so `ModelBundle.load(verify=True)` refuses a corrupted or truncated artifact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recloop.training.evaluation import EvalResult
from recloop.training.models.base import ModelError, Recommender

FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
MODEL_DIR = "model"
# Written by a registry next to a downloaded bundle; not part of the checksummed content.
REGISTRY_FILE = "model_version.json"


@dataclass
class BundleMeta:
    """What bundle.json records about a trained model."""

    family: str
    params: dict[str, Any]
    train_start: str | None
    train_end: str | None
    snapshot_digest: str
    snapshot_rows: int
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleMeta:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class HoldoutEvidence:
    """A holdout evaluation kept beside a refitted model: the per-user metric vectors of the
    same configuration fitted before the holdout, and popularity's on the same users.

    values / baseline: users x len(metrics) float64 (the model's and popularity's per-user
    values, columns in `metrics` order); user_ids: who was scored; n_train / n_test: their
    training rows' and holdout rows' sizes (a re-read holdout must match them); start / end:
    the holdout window.
    """

    k: int
    metrics: tuple[str, ...]
    user_ids: np.ndarray
    values: np.ndarray
    baseline: np.ndarray
    n_train: np.ndarray
    n_test: np.ndarray
    coverage: float
    baseline_coverage: float
    start: str
    end: str

    @classmethod
    def from_result(
        cls, result: EvalResult, user_ids: np.ndarray, start: str, end: str
    ) -> HoldoutEvidence:
        """From an evaluation with popularity beside; `user_ids` maps its rows to user ids."""
        if result.baseline is None:
            raise ModelError("holdout evidence needs popularity evaluated beside the model")
        metrics = tuple(result.per_user)
        coverage = f"coverage@{result.k}"
        return cls(
            k=result.k,
            metrics=metrics,
            user_ids=np.asarray(user_ids)[result.users].astype(np.str_),
            values=np.column_stack([result.per_user[m] for m in metrics]).astype(np.float64),
            baseline=np.column_stack([result.baseline.per_user[m] for m in metrics]).astype(
                np.float64
            ),
            n_train=np.asarray(result.n_train, dtype=np.int64),
            n_test=np.asarray(result.n_test, dtype=np.int64),
            coverage=float(result.metrics.get(coverage, float("nan"))),
            baseline_coverage=float(result.baseline.metrics.get(coverage, float("nan"))),
            start=start,
            end=end,
        )

    def result(self, rows: np.ndarray) -> EvalResult:
        """The recorded evaluation as an EvalResult whose users are `rows` (the recorded users'
        rows in the data it is compared on), popularity as its baseline."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != (len(self.user_ids),):
            raise ModelError(f"need one row per recorded user ({len(self.user_ids)})")

        def one(values: np.ndarray, coverage: float) -> EvalResult:
            per_user = {m: np.asarray(values[:, j]) for j, m in enumerate(self.metrics)}
            metrics = {m: float(v.mean()) if len(v) else float("nan") for m, v in per_user.items()}
            metrics[f"coverage@{self.k}"] = coverage
            n_train, n_test = np.asarray(self.n_train), np.asarray(self.n_test)
            return EvalResult(self.k, metrics, per_user, rows, n_train, n_test)

        out = one(self.values, self.coverage)
        out.baseline = one(self.baseline, self.baseline_coverage)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "holdout_user_ids": np.asarray(self.user_ids, dtype=np.str_),
            "holdout_values": np.asarray(self.values, dtype=np.float64),
            "holdout_baseline": np.asarray(self.baseline, dtype=np.float64),
            "holdout_n_train": np.asarray(self.n_train, dtype=np.int64),
            "holdout_n_test": np.asarray(self.n_test, dtype=np.int64),
        }

    def describe(self) -> dict[str, Any]:
        """What bundle.json records about it (the arrays are files)."""
        return {
            "k": self.k,
            "metrics": list(self.metrics),
            "coverage": self.coverage,
            "baseline_coverage": self.baseline_coverage,
            "start": self.start,
            "end": self.end,
        }

    @classmethod
    def restore(cls, info: dict[str, Any], arrays: dict[str, np.ndarray]) -> HoldoutEvidence:
        return cls(
            k=int(info["k"]),
            metrics=tuple(info["metrics"]),
            user_ids=arrays["holdout_user_ids"],
            values=arrays["holdout_values"],
            baseline=arrays["holdout_baseline"],
            n_train=arrays["holdout_n_train"],
            n_test=arrays["holdout_n_test"],
            coverage=float(info["coverage"]),
            baseline_coverage=float(info["baseline_coverage"]),
            start=str(info["start"]),
            end=str(info["end"]),
        )


@dataclass
class ModelBundle:
    """A fitted model with its id maps, popularity counts and training histories."""

    model: Recommender
    item_ids: np.ndarray
    user_ids: np.ndarray
    item_popularity: np.ndarray
    meta: BundleMeta
    history: sp.csr_matrix | None = None
    # The holdout evaluation of this configuration fitted before the holdout (see the module).
    holdout: HoldoutEvidence | None = None
    # The registry version this bundle was downloaded as (None for a fresh, unregistered one).
    version: str | None = None
    _item_index: dict[str, int] | None = field(default=None, repr=False)
    _user_index: dict[str, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.item_ids) != self.model.n_items:
            raise ModelError(
                f"bundle has {len(self.item_ids)} item ids but the model has {self.model.n_items}"
            )
        if len(self.item_popularity) != len(self.item_ids):
            raise ModelError("item_popularity and item_ids differ in length")
        if self.history is not None and self.history.shape != (
            len(self.user_ids),
            len(self.item_ids),
        ):
            raise ModelError(
                f"history shape {self.history.shape} does not match "
                f"{len(self.user_ids)} users x {len(self.item_ids)} items"
            )

    # ---- lookups ---------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def family(self) -> str:
        return self.meta.family

    def item_index(self, item_id: str) -> int | None:
        """The model column of an item id, or None for an item the model never saw."""
        if self._item_index is None:
            self._item_index = {str(item): i for i, item in enumerate(self.item_ids.tolist())}
        return self._item_index.get(item_id)

    def user_index(self, user_id: str) -> int | None:
        """The training row of a user id, or None for a user absent from the window."""
        if self._user_index is None:
            self._user_index = {str(user): i for i, user in enumerate(self.user_ids.tolist())}
        return self._user_index.get(user_id)

    def history_row(
        self, item_ids: Iterable[str], weights: Sequence[float] | None = None
    ) -> sp.csr_matrix:
        """A 1 x n_items history from item ids (unknown items are ignored; repeats add up)."""
        return self.history_rows([list(item_ids)], None if weights is None else [list(weights)])

    def history_rows(
        self,
        histories: Sequence[Sequence[str]],
        weights: Sequence[Sequence[float]] | None = None,
    ) -> sp.csr_matrix:
        """One history row per list of item ids, as CSR float32 over the model's items."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for row, items in enumerate(histories):
            row_weights = weights[row] if weights is not None else None
            for pos, item in enumerate(items):
                col = self.item_index(item)
                if col is None:
                    continue
                rows.append(row)
                cols.append(col)
                vals.append(1.0 if row_weights is None else float(row_weights[pos]))
        matrix = sp.csr_matrix(
            (np.asarray(vals, np.float32), (rows, cols)),
            shape=(len(histories), self.n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        return matrix

    def training_history(self, user_ids: Sequence[str]) -> sp.csr_matrix:
        """The training rows of these users (an empty row for a user the bundle does not know)."""
        if self.history is None:
            raise ModelError("this bundle was saved without training histories")
        rows = [self.user_index(user) for user in user_ids]
        known = np.array([row is not None for row in rows], dtype=bool)
        picked = self.history[np.array([row for row in rows if row is not None], dtype=np.int64)]
        # Unknown users get zero-length rows: rebuild indptr around the picked rows.
        lengths = np.zeros(len(rows), dtype=np.int64)
        lengths[known] = np.diff(picked.indptr)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        return sp.csr_matrix((picked.data, picked.indices, indptr), shape=(len(rows), self.n_items))

    def popular(self, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """The k most popular training items (cold start), skipping `exclude`."""
        skip = {i for i in (self.item_index(item) for item in exclude) if i is not None}
        order = np.argsort(-self.item_popularity, kind="stable")
        picked = [int(i) for i in order[: k + len(skip)] if int(i) not in skip][:k]
        return [(str(self.item_ids[i]), float(self.item_popularity[i])) for i in picked]

    def recommend(
        self, histories: sp.csr_matrix, k: int = 10, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        """Top-k (item_id, score) per history row; an empty history falls back to popularity."""
        indices, scores = self.model.recommend(histories, k=k, exclude_seen=exclude_seen)
        empty = np.diff(histories.indptr) == 0
        out: list[list[tuple[str, float]]] = []
        for row in range(histories.shape[0]):
            if empty[row]:
                out.append(self.popular(k))
                continue
            keep = indices[row] >= 0
            out.append(
                [
                    (str(self.item_ids[i]), float(s))
                    for i, s in zip(indices[row][keep], scores[row][keep], strict=True)
                ]
            )
        return out

    # ---- persistence ------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "item_ids": np.asarray(self.item_ids, dtype=np.str_),
            "user_ids": np.asarray(self.user_ids, dtype=np.str_),
            "item_popularity": np.asarray(self.item_popularity, dtype=np.float32),
        }
        if self.history is not None:
            history = sp.csr_matrix(self.history, dtype=np.float32)
            arrays["history_indptr"] = history.indptr.astype(np.int64)
            arrays["history_indices"] = history.indices.astype(np.int32)
            arrays["history_data"] = history.data.astype(np.float32)
        if self.holdout is not None:
            arrays.update(self.holdout.arrays())
        return arrays

    def save(self, folder: Path) -> Path:
        """Write the bundle into `folder` (created; must not hold another bundle)."""
        folder = Path(folder)
        if (folder / BUNDLE_FILE).exists():
            raise ModelError(f"{folder} already holds a bundle")
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / MODEL_DIR)
        files: dict[str, dict[str, Any]] = {}
        for name, array in self._arrays().items():
            path = folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            files[name] = {"sha256": sha256_file(path), "shape": list(array.shape)}
        payload = {
            **asdict(self.meta),
            "n_items": self.n_items,
            "n_users": len(self.user_ids),
            "files": files,
            "model_sha256": sha256_file(folder / MODEL_DIR / "model.json"),
        }
        if self.holdout is not None:
            payload["holdout"] = self.holdout.describe()
        (folder / BUNDLE_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: Path, verify: bool = True, mmap: bool = True) -> ModelBundle:
        """Load a bundle; with `verify`, checksums and shapes must match or ModelError is raised."""
        folder = Path(folder)
        try:
            payload = json.loads((folder / BUNDLE_FILE).read_text())
            files = payload["files"]
            if verify and sha256_file(folder / MODEL_DIR / "model.json") != payload["model_sha256"]:
                raise ModelError(f"model/model.json in {folder} fails its checksum")
            arrays: dict[str, np.ndarray] = {}
            for name, info in files.items():
                path = folder / f"{name}.npy"
                if verify and sha256_file(path) != info["sha256"]:
                    raise ModelError(f"{name}.npy in {folder} fails its checksum")
                arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                if list(arrays[name].shape) != info["shape"]:
                    raise ModelError(f"{name}.npy in {folder} does not have shape {info['shape']}")
            model = Recommender.load(folder / MODEL_DIR, verify=verify)
            version = None
            if (folder / REGISTRY_FILE).is_file():
                version = json.loads((folder / REGISTRY_FILE).read_text()).get("version")
            holdout = None
            if "holdout" in payload:
                holdout = HoldoutEvidence.restore(payload["holdout"], arrays)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read model bundle in {folder}: {exc}") from exc
        history = None
        if "history_indptr" in arrays:
            history = sp.csr_matrix(
                (arrays["history_data"], arrays["history_indices"], arrays["history_indptr"]),
                shape=(int(payload["n_users"]), int(payload["n_items"])),
            )
        return cls(
            model=model,
            item_ids=arrays["item_ids"],
            user_ids=arrays["user_ids"],
            item_popularity=arrays["item_popularity"],
            meta=BundleMeta.from_dict(payload),
            history=history,
            holdout=holdout,
            version=version,
        )


def read_meta(folder: Path) -> dict[str, Any]:
    """bundle.json of a bundle folder, without loading the arrays."""
    try:
        data: dict[str, Any] = json.loads((Path(folder) / BUNDLE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder} holds no readable {BUNDLE_FILE}: {exc}") from exc
    return data


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
