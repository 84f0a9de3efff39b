"""Ranking: the model's scores for the candidates plus business rules, each item with a reason.

Rules, in order: exclude seen items, drop unavailable items, keep only the requested category,
a freshness boost (added to the min-max normalised model score and halving every
`freshness_half_life_days`), and a per-category diversity cap (items over the cap wait at the
end and fill in only when there are not enough others).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from recloop.serving.candidates.base import Origin
from recloop.serving.features.base import ItemFeatures


@dataclass(frozen=True)
class RankingRules:
    """Business-rule knobs (see the module docstring)."""

    freshness_boost: float = 0.15
    cold_start_freshness_boost: float = 1.0  # no history: a new item ranks with the most popular
    freshness_half_life_days: float = 7.0
    max_share_per_category: float = 0.4  # of k, at least one item per category


@dataclass(frozen=True)
class Ranked:
    """One recommended item with its final score and why it is there."""

    item_id: str
    score: float
    title: str | None
    categories: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Scored:
    """A candidate after model scoring, before the rules."""

    item_id: str
    score: float
    origin: Origin
    anchor_id: str | None = None


def rank(
    scored: Sequence[Scored],
    metadata: dict[str, ItemFeatures],
    k: int,
    now: datetime,
    rules: RankingRules = RankingRules(),
    seen: frozenset[str] = frozenset(),
    category: str | None = None,
) -> list[Ranked]:
    """The top k after the business rules (fewer when fewer candidates survive them)."""
    survivors: list[tuple[Scored, ItemFeatures]] = []
    for s in scored:
        meta = metadata.get(s.item_id)
        if s.item_id in seen or (meta is not None and not meta.available):
            continue
        if category is not None and meta is not None and category not in meta.categories:
            continue
        survivors.append((s, meta or _UNKNOWN))
    if not survivors:
        return []
    raw = np.array([s.score for s, _ in survivors], dtype=np.float64)
    span = raw.max() - raw.min()
    norm = (raw - raw.min()) / span if span > 0 else np.full(len(raw), 0.5)
    fresh = _freshness(survivors, now, rules)
    final = norm + rules.freshness_boost * fresh
    order = np.argsort(-final, kind="stable").tolist()
    cap = max(1, math.floor(k * rules.max_share_per_category))
    counts: Counter[str] = Counter()
    picked: list[int] = []
    deferred: list[int] = []
    for i in order:
        cats = survivors[i][1].categories
        primary = cats[0] if cats else None
        if primary is not None and category is None and counts[primary] >= cap:
            deferred.append(i)
            continue
        counts[primary or ""] += 1
        picked.append(i)
        if len(picked) == k:
            break
    picked += deferred[: k - len(picked)]
    return [
        Ranked(
            item_id=survivors[i][0].item_id,
            score=round(float(final[i]), 6),
            title=survivors[i][1].title,
            categories=survivors[i][1].categories,
            reason=_reason(survivors[i][0], fresh[i], metadata),
        )
        for i in picked
    ]


_UNKNOWN = ItemFeatures(item_id="")


def _freshness(
    survivors: list[tuple[Scored, ItemFeatures]], now: datetime, rules: RankingRules
) -> np.ndarray:
    """0.5 ** (age in half-lives) per item, 0 for undated items (vectorised: a hot path)."""
    published = np.array(
        [m.published_at.timestamp() if m.published_at else np.nan for _, m in survivors]
    )
    age_days = np.maximum(0.0, (now.timestamp() - published) / 86_400)
    fresh = 0.5 ** (age_days / rules.freshness_half_life_days)
    return np.where(np.isnan(published), 0.0, fresh)


def _reason(item: Scored, fresh: float, metadata: dict[str, ItemFeatures]) -> str:
    if item.origin is Origin.NEIGHBOUR and item.anchor_id is not None:
        anchor = metadata.get(item.anchor_id)
        return f"similar to {anchor.title if anchor and anchor.title else item.anchor_id}"
    if fresh >= 0.5:
        return "new this week" if item.origin is Origin.POPULAR else "new, matches your taste"
    if item.origin is Origin.VECTOR:
        return "matches your recent activity"
    return "popular now"
