"""Helpers shared by model families: input weighting, thread limits, factor fold-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recloop.training.models.base import ModelError

WEIGHTINGS = ("raw", "binary", "log")


def weigh(matrix: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    """The same input transform at fit time and for every history scored later.

    raw: weights as built; binary: 1 per interaction; log: log1p(weight), which tames heavy
    repeat users without discarding the signal.
    """
    if weighting not in WEIGHTINGS:
        raise ModelError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if weighting == "binary":
        out.data = (out.data > 0).astype(np.float32)
    elif weighting == "log":
        out.data = np.log1p(np.maximum(out.data, 0)).astype(np.float32)
    return out


def thread_count(num_threads: int) -> int:
    """0 means every core this process may use."""
    if num_threads < 0:
        raise ModelError(f"num_threads must be >= 0, got {num_threads}")
    if num_threads:
        return num_threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def single_threaded_blas() -> Iterator[Any]:
    """Run implicit with BLAS on one thread.

    implicit parallelises over users itself; a multi-threaded BLAS underneath oversubscribes
    the cores (implicit warns about exactly this with a RuntimeWarning when it sees it).
    Limiting it here, around the calls, avoids both without touching OPENBLAS_* variables.
    """
    with threadpool_limits(limits=1, user_api="blas") as limits:
        yield limits


def item_gram(item_factors: np.ndarray) -> np.ndarray:
    """YtY in float64: the part of every user's fold-in system that does not depend on them."""
    factors = np.asarray(item_factors, dtype=np.float64)
    gram: np.ndarray = factors.T @ factors
    return gram


def fold_in(
    item_factors: np.ndarray,
    histories: sp.csr_matrix,
    regularization: float,
    alpha: float,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """User factors that best explain each history given fixed item factors (implicit ALS).

    The exact least-squares solve implicit's `recalculate_user` does, in numpy, so it works on
    read-only memory-mapped factors: confidence c = alpha * weight, and for each user
    x = (YtY + reg I + Yt (C - I) Y)^-1 Yt C p. An empty history gives a zero vector. Pass
    `gram` (item_gram of the same factors) to skip recomputing YtY: at 100k items x 64 factors
    that product is ~100 ms, the solve for one user well under 1 ms.
    """
    factors = np.asarray(item_factors, dtype=np.float32)
    n_factors = factors.shape[1]
    yty = item_gram(factors) if gram is None else gram
    base = yty + regularization * np.eye(n_factors)
    n = histories.shape[0]
    lhs = np.broadcast_to(base, (n, n_factors, n_factors)).copy()
    rhs = np.zeros((n, n_factors))
    indptr, indices, data = histories.indptr, histories.indices, histories.data
    for row in range(n):
        lo, hi = indptr[row], indptr[row + 1]
        if lo == hi:
            continue
        conf = alpha * data[lo:hi].astype(np.float64)
        # implicit reads a negative confidence as a negative preference of that strength.
        pref = (conf > 0).astype(np.float64)
        conf = np.abs(conf)
        y = factors[indices[lo:hi]].astype(np.float64)
        lhs[row] += (y.T * (conf - 1.0)) @ y
        rhs[row] = y.T @ (conf * pref)
    return np.linalg.solve(lhs, rhs[..., None])[..., 0].astype(np.float32)
