"""Ranking: the model's scores for the candidates plus business rules, each item with a reason.

Rules, in order: exclude seen items, drop unavailable items, keep only the requested category,
a freshness boost (added to the min-max normalised model score and halving every
`freshness_half_life_days`), and a per-category diversity cap (items over the cap wait at the
end and fill in only when there are not enough others).
"""

from __future__ import annotations

import math
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


@dataclass(slots=True)  # not frozen: ten are built per request, frozen costs 2x (0.6 us each)
class Ranked:
    """One recommended item with its final score and why it is there.

    Its fields are the response's item fields, in order: orjson serialises it as it is.
    """

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


@dataclass(slots=True)  # per request: see Ranked
class MetaArrays:
    """The metadata of a batch of candidates, one entry per candidate (what the rules read)."""

    known: np.ndarray  # bool: the store has metadata for the item
    available: np.ndarray  # bool (True when unknown)
    published: np.ndarray  # float64 epoch seconds; nan when undated or unknown
    titles: np.ndarray  # object: str | None
    categories: np.ndarray  # object: tuple[str, ...], () when unknown

    @classmethod
    def from_dict(cls, item_ids: Sequence[str], metadata: dict[str, ItemFeatures]) -> MetaArrays:
        n = len(item_ids)
        found = [metadata.get(i) for i in item_ids]
        titles = np.empty(n, dtype=object)
        categories = np.empty(n, dtype=object)
        titles[:] = [m.title if m else None for m in found]
        categories[:] = [m.categories if m else () for m in found]
        return cls(
            known=np.fromiter((m is not None for m in found), bool, n),
            available=np.fromiter((m is None or m.available for m in found), bool, n),
            published=np.fromiter(
                (m.published_at.timestamp() if m and m.published_at else np.nan for m in found),
                np.float64,
                n,
            ),
            titles=titles,
            categories=categories,
        )


def choose(
    scores: np.ndarray,
    meta: MetaArrays,
    k: int,
    now: datetime,
    rules: RankingRules = RankingRules(),
    drop: np.ndarray | None = None,
    category: str | None = None,
) -> list[tuple[int, float, float]]:
    """The rules on arrays: (position, final score, freshness) of the top k, best first.

    `drop` marks candidates to leave out (seen items). Python touches only the k picked items
    and the diversity cap's walk down the order, never every candidate.
    """
    keep = meta.available if drop is None else meta.available & ~drop
    if category is not None:
        in_category = np.fromiter(
            (category in c for c in meta.categories.tolist()), bool, len(meta.categories)
        )
        keep = keep & (in_category | ~meta.known)
    positions = keep.nonzero()[0]
    if not len(positions):
        return []
    raw = np.asarray(scores, dtype=np.float64)[positions]
    low = raw.min()
    span = raw.max() - low
    norm = (raw - low) / span if span > 0 else np.full(len(raw), 0.5)
    fresh = _freshness(meta.published[positions], now, rules)
    final = norm + rules.freshness_boost * fresh
    order = (-final).argsort(kind="stable").tolist()
    cap = max(1, math.floor(k * rules.max_share_per_category))
    # A plain dict: a Counter's missing keys go through a Python-level __missing__ call.
    counts: dict[str, int] = {}
    picked: list[int] = []
    deferred: list[int] = []
    # Plain lists: indexing numpy arrays one element at a time costs ~100 ns a go.
    categories = meta.categories[positions].tolist()
    for i in order:
        cats = categories[i]
        primary = cats[0] if cats else None
        key = primary or ""
        taken = counts.get(key, 0)
        if primary is not None and category is None and taken >= cap:
            deferred.append(i)
            continue
        counts[key] = taken + 1
        picked.append(i)
        if len(picked) == k:
            break
    picked += deferred[: k - len(picked)]
    where, finals, freshes = positions.tolist(), final.tolist(), fresh.tolist()
    return [(where[i], finals[i], freshes[i]) for i in picked]


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
    ids = [s.item_id for s in scored]
    meta = MetaArrays.from_dict(ids, metadata)
    drop = np.fromiter((i in seen for i in ids), bool, len(ids)) if seen else None
    scores = np.array([s.score for s in scored], dtype=np.float64)
    return [
        Ranked(
            item_id=ids[i],
            score=round(final, 6),
            title=meta.titles[i],
            categories=meta.categories[i],
            reason=reason(scored[i].origin, fresh, _anchor_label(scored[i].anchor_id, metadata)),
        )
        for i, final, fresh in choose(scores, meta, k, now, rules, drop, category)
    ]


def _anchor_label(anchor_id: str | None, metadata: dict[str, ItemFeatures]) -> str | None:
    if anchor_id is None:
        return None
    anchor = metadata.get(anchor_id)
    return anchor.title if anchor and anchor.title else anchor_id


def _freshness(published: np.ndarray, now: datetime, rules: RankingRules) -> np.ndarray:
    """0.5 ** (age in half-lives) per item, 0 for undated items."""
    age_days = np.maximum(0.0, (now.timestamp() - published) / 86_400)
    fresh = 0.5 ** (age_days / rules.freshness_half_life_days)
    return np.where(np.isnan(published), 0.0, fresh)


def reason(origin: Origin, fresh: float, anchor_label: str | None) -> str:
    """Why an item is recommended; `anchor_label` names the history item behind a neighbour."""
    if origin is Origin.NEIGHBOUR and anchor_label is not None:
        return f"similar to {anchor_label}"
    if fresh >= 0.5:
        return "new this week" if origin is Origin.POPULAR else "new, matches your taste"
    if origin is Origin.VECTOR:
        return "matches your recent activity"
    return "popular now"
