"""The champion/challenger gate: only a model that is better, by enough and for sure, is approved.

Both models are scored on the same most recent holdout and the same users. The challenger is
approved only when
  1. its primary metric beats the incumbent's by at least `margin` (relative), and
  2. the lower bound of the paired-bootstrap confidence interval of the per-user difference is
     above zero.
The incumbent is the champion; when there is none, it is popularity fitted on the same training
data (the first model must beat it). Anything else is Rejected with the reason; nothing is
approved by default, and every decision carries its evidence.

The champion is scored as it serves: on each user's recent rows plus the training rows its
bundle carries (`served_histories`), through `BundleOnItems` on today's item columns, when its
training ended before the holdout. A champion trained into the holdout has been fitted on the
holdout's events; the pipeline then compares recipes (its family and parameters refitted on the
challenger's pre-holdout data), never an artifact on data it was fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recloop.registry.base import ModelRegistry, ModelVersion
from recloop.training.bundle import ModelBundle
from recloop.training.dataset import InteractionData
from recloop.training.evaluation import EvalResult, paired_bootstrap
from recloop.training.models.base import ModelError, Recommender


@dataclass(frozen=True)
class GateConfig:
    """The gate's rule: primary metric, relative margin, bootstrap samples and level, seed."""

    metric: str = "recall@10"
    margin: float = 0.01
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 42

    @classmethod
    def from_settings(cls) -> GateConfig:
        from recloop.config import get_settings

        s = get_settings()
        return cls(
            s.train_metric, s.gate_margin, s.gate_bootstrap_samples, s.gate_confidence, s.train_seed
        )


@dataclass(frozen=True)
class GateDecision:
    """Approved or not, why, and the figures behind it."""

    approved: bool
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


def decide(
    challenger: EvalResult,
    incumbent: EvalResult,
    incumbent_name: str,
    config: GateConfig,
    context: dict[str, Any] | None = None,
) -> GateDecision:
    """Compare two evaluations of the same users under `config`'s rule."""
    metric = config.metric
    if len(challenger.users) == 0:
        return GateDecision(
            False,
            "rejected: the holdout has no users to compare on",
            {"metric": metric, **(context or {})},
        )
    ours = float(challenger.metrics[metric])
    theirs = float(incumbent.metrics[metric])
    boot = paired_bootstrap(
        challenger,
        incumbent,
        metric,
        n=config.bootstrap_samples,
        seed=config.seed,
        confidence=config.confidence,
    )
    relative = (ours - theirs) / theirs if theirs > 0 else (math.inf if ours > 0 else 0.0)
    enough = ours > theirs and relative >= config.margin
    sure = boot.lower > 0
    evidence = {
        "metric": metric,
        "challenger": ours,
        "incumbent": incumbent_name,
        "incumbent_value": theirs,
        "relative_improvement": relative if math.isfinite(relative) else None,
        "margin": config.margin,
        "bootstrap": {
            "mean_diff": boot.mean_diff,
            "lower": boot.lower,
            "upper": boot.upper,
            "n_users": boot.n_users,
            "confidence": boot.confidence,
            "samples": config.bootstrap_samples,
            "seed": config.seed,
        },
        "challenger_metrics": dict(challenger.metrics),
        "incumbent_metrics": dict(incumbent.metrics),
        **(context or {}),
    }
    level = f"{boot.confidence:.0%}"
    figures = (
        f"{metric} {ours:.4f} vs {incumbent_name} {theirs:.4f} "
        f"({_pct(relative)}; margin {config.margin:.1%}); {level} CI of the difference "
        f"[{boot.lower:+.4f}, {boot.upper:+.4f}] over {boot.n_users} users"
    )
    if enough and sure:
        return GateDecision(True, f"approved: {figures}", evidence)
    why = []
    if not enough:
        why.append("improvement below the margin")
    if not sure:
        why.append("bootstrap lower bound not above 0")
    return GateDecision(False, f"rejected ({' and '.join(why)}): {figures}", evidence)


def apply(registry: ModelRegistry, version: str, decision: GateDecision) -> ModelVersion:
    """Record the decision on the registered version (Approved or Rejected, with evidence)."""
    if decision.approved:
        return registry.approve(version, decision.reason, decision.evidence)
    return registry.reject(version, decision.reason, decision.evidence)


def _pct(value: float) -> str:
    return "new signal" if math.isinf(value) else f"{value:+.1%}"


class BundleOnItems(Recommender):
    """A registered bundle scored on another dataset's item columns (the champion on today's data).

    Histories arrive in the new item space and are mapped into the bundle's; recommendations
    are mapped back, items the new data does not know become -1 (never a hit). Users with no
    history the bundle recognises get its popularity list, as in serving.
    """

    family = "bundle_on_items"

    def __init__(self, bundle: ModelBundle, item_ids: np.ndarray) -> None:
        super().__init__()
        self.bundle = bundle
        self.n_items = len(item_ids)
        bundle_cols = np.array([bundle.item_index(str(i)) for i in item_ids], dtype=object)
        self._known = np.array([c is not None for c in bundle_cols], dtype=bool)
        self._to_bundle = np.array([c if c is not None else -1 for c in bundle_cols], np.int64)
        self._from_bundle = np.full(bundle.n_items, -1, dtype=np.int64)
        self._from_bundle[self._to_bundle[self._known]] = np.flatnonzero(self._known)

    def recommend(
        self,
        histories: sp.csr_matrix,
        k: int = 10,
        exclude_seen: bool = True,
        items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if items is not None:
            raise ModelError("BundleOnItems does not restrict candidates")
        coo = sp.csr_matrix(histories, dtype=np.float32).tocoo()
        keep = self._known[coo.col]
        mapped = sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], self._to_bundle[coo.col[keep]])),
            shape=(histories.shape[0], self.bundle.n_items),
        )
        ids, scores = self.bundle.model.recommend(mapped, k=k, exclude_seen=exclude_seen)
        empty = np.diff(mapped.indptr) == 0
        if empty.any():
            top = np.argsort(-np.asarray(self.bundle.item_popularity), kind="stable")[
                : ids.shape[1]
            ]
            ids[empty] = top
            scores[empty] = np.asarray(self.bundle.item_popularity)[top]
        out = np.where(ids >= 0, self._from_bundle[np.maximum(ids, 0)], -1)
        return out, np.where(out >= 0, scores, -np.inf).astype(np.float32)

    # The adapter only recommends; it is never fitted, scored directly or saved.
    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        raise ModelError("BundleOnItems wraps a fitted bundle")

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        raise ModelError("BundleOnItems has no user vectors of its own")

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        raise ModelError("BundleOnItems has no scores of its own")

    def _arrays(self) -> dict[str, np.ndarray]:
        raise ModelError("BundleOnItems is not saved")

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise ModelError("BundleOnItems is not loaded")


def served_histories(bundle: ModelBundle, data: InteractionData) -> sp.csr_matrix:
    """`data`'s rows plus each user's training history in `bundle`, on `data`'s items.

    Serving computes a signed-in user's vector from their recent events *and* the training
    rows the bundle carries (ServedModel.history_row), so a champion trained before a change
    in tastes keeps leaning on the old ones. Scoring the champion on these rows is scoring it
    as it serves; items `data` does not know are dropped. Only for a bundle trained before the
    data it is scored on: one trained into it has seen the answers (the pipeline then refits
    its recipe instead). A bundle without histories gets `data`'s rows unchanged.
    """
    if bundle.history is None:
        return data.matrix
    trained = bundle.training_history([str(u) for u in data.user_ids]).tocoo()
    columns = pd.Index(np.asarray(data.item_ids).astype(str)).get_indexer(
        np.asarray(bundle.item_ids).astype(str)
    )
    cols = columns[trained.col]
    keep = cols >= 0
    extra = sp.csr_matrix(
        (trained.data[keep], (trained.row[keep], cols[keep])), shape=data.shape, dtype=np.float32
    )
    return sp.csr_matrix(data.matrix + extra, dtype=np.float32)
