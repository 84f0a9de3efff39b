"""Lake objects kept in memory between passes: a warm Lambda container reads each one once.

Every pass of the loop reads the same recent hours of the lake again (the detectors' windows,
the guard's counts); lake objects are never replaced once written (conditional creates; a
compaction writes new objects and a manifest), so a copy of an object is good for as long as
the container lives. Listings are not cached: new objects show up at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from recloop.lake.store import ObjectInfo, ObjectStore


class CachedStore:
    """An ObjectStore whose `get` keeps up to `max_bytes` of recently read objects."""

    def __init__(self, store: ObjectStore, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.store = store
        self.uri = store.uri
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.store.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return found
        data = self.store.get(key)
        with self._lock:
            self.misses += 1
            if len(data) <= self.max_bytes and key not in self._cache:
                self._cache[key] = data
                self._size += len(data)
                while self._size > self.max_bytes:
                    _, dropped = self._cache.popitem(last=False)
                    self._size -= len(dropped)
        return data

    def copy_to(self, key: str, path: Path) -> None:
        self.store.copy_to(key, path)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.store.list(prefix)

    def retire(self, key: str) -> None:
        self.store.retire(key)
