"""implicit's ALS (Hu, Koren & Volinsky): factors from confidence-weighted implicit feedback.

A user's vector is re-solved from their latest history against the fixed item factors (the
least-squares step implicit's recalculate_user does), so serving reacts to a click at once.

Fitting runs on a GPU when `use_gpu` says so ("auto", the default: when implicit was built
with CUDA and a CUDA device is present). The factors are copied back to numpy before they are
kept, so the artifact is the same .npy either way and serving never needs a GPU.
"""

from __future__ import annotations

import logging
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recloop.training.models._common import (
    fold_in,
    item_gram,
    single_threaded_blas,
    thread_count,
    weigh,
)
from recloop.training.models.base import ModelError, Recommender

log = logging.getLogger(__name__)

# Tuned on ML-100K (bench/train_quality.py): strong regularization matters most there
# (nDCG@10 0.38 at regularization 0.05 -> 0.47 at 20). implicit does not scale it by the data
# size, so bigger data may want a different value: the search grid spans 0.1 .. 50.
ALS_DEFAULTS: dict[str, Any] = {
    "factors": 64,
    "regularization": 20.0,
    "alpha": 2.0,
    "iterations": 15,
    "weighting": "binary",
    "random_state": 0,
    "num_threads": 0,
    "use_gpu": "auto",  # "auto" | True | False (see use_gpu)
}


def cuda_available() -> bool:
    """implicit was built with CUDA (implicit.gpu.HAS_CUDA) and a CUDA device is present."""
    import implicit.gpu

    if not implicit.gpu.HAS_CUDA:
        return False
    try:
        return int(implicit.gpu.get_device_count()) > 0
    except (AttributeError, RuntimeError):  # no _cuda extension, or the driver refuses
        return False


def use_gpu(setting: Any) -> bool:
    """Whether to fit on the GPU: "auto" when CUDA is available; True demands it."""
    value = setting.lower() if isinstance(setting, str) else setting
    if value == "auto":
        return cuda_available()
    if value in (True, "true"):
        if not cuda_available():
            raise ModelError("use_gpu=true, but implicit has no CUDA support or no CUDA device")
        return True
    if value in (False, "false"):
        return False
    raise ModelError(f'use_gpu must be "auto", true or false, got {setting!r}')


def to_numpy(factors: Any) -> np.ndarray:
    """Factors as a float32 numpy array: implicit.gpu.Matrix copies itself back (to_numpy)."""
    if hasattr(factors, "to_numpy"):
        factors = factors.to_numpy()
    return np.ascontiguousarray(factors, dtype=np.float32)


class ALS(Recommender):
    """Matrix factorisation by alternating least squares (implicit.gpu or implicit.cpu)."""

    family = "als"

    def __init__(self, **params: Any) -> None:
        super().__init__(**{**ALS_DEFAULTS, **params})
        self.item_factors = np.zeros((0, int(self.params["factors"])), dtype=np.float32)
        # YtY, computed on first use and kept: every user vector needs it (see fold_in).
        self._gram: np.ndarray | None = None
        self.device = ""  # where the last fit ran: "gpu" or "cpu"

    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        p = self.params
        common = {
            "factors": int(p["factors"]),
            "regularization": float(p["regularization"]),
            "alpha": float(p["alpha"]),
            "iterations": int(p["iterations"]),
            "random_state": int(p["random_state"]),
        }
        gpu = use_gpu(p["use_gpu"])
        weighted = weigh(interactions, p["weighting"])
        model: Any
        if gpu:
            from implicit.gpu.als import AlternatingLeastSquares as GpuALS

            model = GpuALS(**common)
            model.fit(weighted, show_progress=False)
        else:
            from implicit.cpu.als import AlternatingLeastSquares as CpuALS

            with single_threaded_blas():
                model = CpuALS(**common, num_threads=thread_count(int(p["num_threads"])))
                model.fit(weighted, show_progress=False)
        self.device = "gpu" if gpu else "cpu"
        log.info("ALS fitted on the %s", self.device)
        self.item_factors = to_numpy(model.item_factors)
        self._gram = None
        self.n_items = interactions.shape[1]
        return self

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        histories = weigh(self._histories(histories), self.params["weighting"])
        if self._gram is None:
            self._gram = item_gram(self.item_factors)
        # No threadpool_limits here: it inspects the loaded libraries on every call (~1 ms),
        # more than the 64 x 64 solves it would govern.
        return fold_in(
            self.item_factors,
            histories,
            float(self.params["regularization"]),
            float(self.params["alpha"]),
            gram=self._gram,
        )

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        factors = self.item_factors if items is None else self.item_factors[np.asarray(items)]
        scores: np.ndarray = np.asarray(user_vectors, dtype=np.float32) @ np.asarray(factors).T
        return scores

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors = arrays["item_factors"]
        self._gram = None
