"""A short-lived in-process cache of item metadata, in front of the feature store.

Metadata changes rarely and the same popular items appear in most answers, so each worker keeps
what it read for `ttl_s` seconds: availability changes show within that delay. Unknown items are
cached too (as None), so a missing row is not asked for on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from recloop.serving.features.base import ItemFeatures


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
