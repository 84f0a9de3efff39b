"""A small, budgeted, seeded hyperparameter search per family, and "try every family".

Each family has a grid of plausible values (SEARCH_SPACES). A search of budget n evaluates the
family's defaults first, then n - 1 distinct random grid points drawn with the seed, each
fitted on `train` and scored on `validation` (the next window's clicks) over one fixed, seeded
sample of users, so trials and families are compared on the same people.

The primary metric is recall@10: the share of the next window's clicks the top 10 captures.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recloop.errors import RecloopError
from recloop.training.evaluation import evaluate, select_users
from recloop.training.models import FAMILIES, Recommender, make

log = logging.getLogger(__name__)

PRIMARY_METRIC = "recall@10"

SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "popularity": {},
    "popularity_recent": {"half_life_days": [1.0, 3.0, 7.0, 14.0, 30.0]},
    "als": {
        "factors": [32, 64, 128],
        "regularization": [0.1, 1.0, 5.0, 10.0, 20.0, 50.0],
        "alpha": [1.0, 2.0, 5.0, 10.0, 20.0],
        "weighting": ["binary", "log"],
    },
    "bpr": {
        "factors": [32, 64, 128],
        "learning_rate": [0.01, 0.05, 0.1],
        "regularization": [0.001, 0.01, 0.1],
        "iterations": [100, 200],
    },
    "itemknn": {
        "similarity": ["bm25", "cosine"],
        "K": [20, 50, 100, 200],
        "K1": [0.6, 1.2, 2.0],
        "B": [0.25, 0.5, 0.75],
        "weighting": ["raw", "binary", "log"],
    },
    "ease": {
        "l2": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0],
        "dropout": [0.0, 0.25, 0.5, 0.7],
        "weighting": ["binary", "log"],
    },
}
# Families `train_all` tries when none are named; test-only families registered by tests are
# left out because they are not in SEARCH_SPACES.
DEFAULT_FAMILIES = tuple(SEARCH_SPACES)


class SearchError(RecloopError):
    """A search was given an unknown family, an empty budget or unusable data."""


@dataclass(frozen=True)
class Trial:
    """One configuration tried: its params, validation metrics and fit time."""

    family: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fit_seconds: float


@dataclass
class SearchResult:
    """The best configuration of one family, the fitted model, and every trial."""

    family: str
    params: dict[str, Any]
    metrics: dict[str, float]
    model: Recommender = field(repr=False)
    trials: list[Trial] = field(default_factory=list)
    metric: str = PRIMARY_METRIC

    @property
    def score(self) -> float:
        return self.metrics[self.metric]


TrialCallback = Callable[[Trial], None]


def candidate_params(family: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """The defaults ({}) then up to budget - 1 distinct grid points, in a seeded order."""
    if family not in FAMILIES:
        raise SearchError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    if budget < 1:
        raise SearchError(f"budget must be >= 1, got {budget}")
    space = SEARCH_SPACES.get(family, {})
    names = sorted(space)
    grid = (
        [
            dict(zip(names, values, strict=True))
            for values in itertools.product(*(space[name] for name in names))
        ]
        if names
        else []
    )
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(grid))[: budget - 1].tolist()
    return [{}] + [grid[i] for i in picks]


def search(
    family: str,
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    budget: int = 8,
    seed: int = 0,
    *,
    ages: sp.csr_matrix | None = None,
    fixed: Mapping[str, Any] | None = None,
    metric: str = PRIMARY_METRIC,
    k: int = 10,
    max_users: int | None = 10_000,
    users: np.ndarray | None = None,
    on_trial: TrialCallback | None = None,
) -> SearchResult:
    """Try `budget` configurations of `family`; return the best on `validation` by `metric`.

    `fixed` params (num_threads, random_state, ...) apply to every trial. Ties keep the earlier
    trial, so the defaults win unless something is strictly better.
    """
    if users is None:
        users = _validation_users(validation, max_users, seed)
    # Seeded families get the search seed unless the caller fixed their random_state.
    fixed = {**_shared_params(family, {"random_state": seed}), **(fixed or {})}
    best: SearchResult | None = None
    trials: list[Trial] = []
    for params in candidate_params(family, budget, seed):
        params = {**params, **fixed}
        started = time.perf_counter()
        model = make(family, **params).fit(train, ages)
        fit_seconds = time.perf_counter() - started
        result = evaluate(model, train, validation, k=k, users=users)
        if metric not in result.metrics:
            raise SearchError(f"metric {metric!r} is not measured; have {sorted(result.metrics)}")
        trial = Trial(family, dict(model.params), result.metrics, fit_seconds)
        trials.append(trial)
        log.info(
            "%s %s: %s=%.4f (%.1fs)", family, params, metric, result.metrics[metric], fit_seconds
        )
        if on_trial is not None:
            on_trial(trial)
        if best is None or result.metrics[metric] > best.metrics[metric]:
            best = SearchResult(family, dict(model.params), result.metrics, model, metric=metric)
    assert best is not None  # candidate_params always yields the defaults
    best.trials = trials
    return best


def train_all(
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    families: Iterable[str] | None = None,
    budget: int = 8,
    seed: int = 0,
    *,
    ages: sp.csr_matrix | None = None,
    fixed: Mapping[str, Mapping[str, Any]] | None = None,
    metric: str = PRIMARY_METRIC,
    k: int = 10,
    max_users: int | None = 10_000,
    on_trial: TrialCallback | None = None,
) -> list[SearchResult]:
    """Search every family (default: all in SEARCH_SPACES) and rank them by `metric`, best first.

    Every family is scored on the same seeded sample of validation users. `fixed` maps a
    family to params forced on all its trials (e.g. {"als": {"factors": 64}}); the key "*"
    applies to every family that accepts the param (num_threads).
    """
    if families is None:
        # Recency-aware families need the ages matrix; without it they are left out.
        names = [n for n in DEFAULT_FAMILIES if ages is not None or not FAMILIES[n].needs_ages]
    else:
        names = list(families)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown or not names:
        raise SearchError(f"unknown model families {unknown}; known: {sorted(FAMILIES)}")
    if ages is None and (needy := [n for n in names if FAMILIES[n].needs_ages]):
        raise SearchError(f"families {needy} need the ages matrix (InteractionData.ages)")
    users = _validation_users(validation, max_users, seed)
    fixed = fixed or {}
    results = []
    for name in names:
        forced = {**_shared_params(name, fixed.get("*", {})), **fixed.get(name, {})}
        results.append(
            search(
                name,
                train,
                validation,
                budget,
                seed,
                ages=ages,
                fixed=forced,
                metric=metric,
                k=k,
                users=users,
                on_trial=on_trial,
            )
        )
    # Stable sort: equal scores keep the order the families were given in.
    return sorted(results, key=lambda r: -r.score)


def refit(
    result: SearchResult, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None
) -> Recommender:
    """The chosen configuration fitted again on the whole window (holdout included)."""
    return make(result.family, **result.params).fit(interactions, ages)


def _validation_users(validation: sp.csr_matrix, max_users: int | None, seed: int) -> np.ndarray:
    users = select_users(validation, max_users, seed)
    if len(users) == 0:
        raise SearchError("the validation window has no user with a test interaction")
    return users


def _shared_params(family: str, shared: Mapping[str, Any]) -> dict[str, Any]:
    # Only pass a shared param to families that have it (popularity has no num_threads).
    defaults = make(family).params
    return {name: value for name, value in shared.items() if name in defaults}
