"""A short-lived in-process cache of item metadata, in front of the feature store.

Metadata changes rarely and the same popular items appear in most answers, so each worker keeps
what it read for `ttl_s` seconds: availability changes show within that delay. Unknown items are
cached too (as None), so a missing row is not asked for on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recloop.serving.features.base import ItemFeatures
from recloop.serving.ranking import MetaArrays


class ItemCache:
    """item id -> (metadata or None, expiry); bounded by `max_items` (cleared when full)."""

    def __init__(
        self,
        ttl_s: float = 5.0,
        max_items: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._clock = clock
        self._entries: dict[str, tuple[ItemFeatures | None, float]] = {}

    def split(self, item_ids: Sequence[str]) -> tuple[dict[str, ItemFeatures], list[str]]:
        """(cached metadata of the known items, ids that must be read from the store)."""
        now = self._clock()
        found: dict[str, ItemFeatures] = {}
        missing: list[str] = []
        for item_id in item_ids:
            entry = self._entries.get(item_id)
            if entry is None or entry[1] < now:
                missing.append(item_id)
            elif entry[0] is not None:
                found[item_id] = entry[0]
        return found, missing

    def store(self, asked: Sequence[str], fetched: dict[str, ItemFeatures]) -> None:
        if len(self._entries) + len(asked) > self.max_items:
            self._entries.clear()
        expiry = self._clock() + self.ttl_s
        for item_id in asked:
            self._entries[item_id] = (fetched.get(item_id), expiry)


class ItemTable:
    """Item metadata by model index, as arrays, for one model version; rows expire after ttl_s.

    The hot path's form of ItemCache: finding the expired rows of a request's candidates and
    gathering their metadata are a few vectorised operations instead of a dict lookup and a
    Python object per candidate. Same delay as ItemCache: a row read from the store is trusted
    for `ttl_s` seconds, so an availability change shows within that delay.
    """

    def __init__(
        self,
        n_items: int,
        ttl_s: float = 5.0,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.check_every_s = check_every_s
        self._clock = clock
        self.version: int | None = None
        self._checked_at = -np.inf
        self.expiry = np.full(n_items, -np.inf)
        self.known = np.zeros(n_items, dtype=bool)
        self.available = np.ones(n_items, dtype=bool)
        self.published = np.full(n_items, np.nan)
        self.titles = np.full(n_items, None, dtype=object)
        self.categories = np.empty(n_items, dtype=object)
        self.categories[:] = [()] * n_items
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}

    def version_due(self) -> bool:
        """True when the store's items version should be asked for again (see `confirm`)."""
        return self._clock() - self._checked_at >= self.check_every_s

    def confirm(self, version: int) -> None:
        """The store's items are at `version`: unchanged, every row read stays valid ttl_s more.

        A store that versions its items (SQLite) thus keeps rows until an item changes, and
        a change shows within `check_every_s`; without versions rows expire after ttl_s.
        """
        now = self._clock()
        self._checked_at = now
        if version != self.version:
            self.version = version
            self.expiry[:] = -np.inf
        else:
            read = np.isfinite(self.expiry)
            np.maximum(self.expiry, now + self.ttl_s, out=self.expiry, where=read)

    def stale(self, indices: np.ndarray) -> np.ndarray:
        """The distinct indices among `indices` whose rows must be read from the store."""
        indices = np.asarray(indices, dtype=np.int64)
        expired = self.expiry[indices] < self._clock()
        if not expired.any():  # the usual case: np.unique of nothing still costs ~3 us
            return indices[:0]
        return np.unique(indices[expired])

    def fill(self, indices: np.ndarray, item_ids: Sequence[str], fetched: dict[str, Any]) -> None:
        """Store what the store returned for these rows (absent ones are remembered as unknown)."""
        rows = np.asarray(indices, dtype=np.int64)
        n = len(rows)
        found: list[ItemFeatures | None] = [fetched.get(i) for i in item_ids]
        self.known[rows] = np.fromiter((m is not None for m in found), bool, n)
        self.available[rows] = np.fromiter((m is None or m.available for m in found), bool, n)
        self.published[rows] = np.fromiter(
            (m.published_at.timestamp() if m and m.published_at else np.nan for m in found),
            np.float64,
            n,
        )
        self.titles[rows] = np.fromiter((m.title if m else None for m in found), object, n)
        # A catalogue has few distinct category tuples: one object each, not one per item
        # (~6 MB per worker at 100k items).
        interned = self._interned
        self.categories[rows] = np.fromiter(
            (interned.setdefault(m.categories, m.categories) if m else () for m in found), object, n
        )
        self.expiry[rows] = self._clock() + self.ttl_s

    def gather(self, indices: np.ndarray, unusable: np.ndarray | None = None) -> MetaArrays:
        """The metadata of these rows; rows in `unusable` (a failed refresh) count as unknown."""
        indices = np.asarray(indices, dtype=np.int64)
        known = self.known[indices]
        if unusable is not None and len(unusable):
            known &= ~np.isin(indices, unusable)
        if known.all():  # the usual case: plain gathers, no masking
            return MetaArrays(
                known=known,
                available=self.available[indices],
                published=self.published[indices],
                titles=self.titles[indices],
                categories=self.categories[indices],
            )
        return MetaArrays(
            known=known,
            available=np.where(known, self.available[indices], True),
            published=np.where(known, self.published[indices], np.nan),
            titles=np.where(known, self.titles[indices], _NO_TITLE),
            categories=np.where(known, self.categories[indices], _EMPTY),
        )


_NO_TITLE = np.full(1, None, dtype=object)
_EMPTY = np.empty(1, dtype=object)
_EMPTY[0] = ()
