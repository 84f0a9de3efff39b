"""Lake test helpers: a store that dies at a chosen write, as a killed compaction would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from recloop.lake import ObjectStore
from recloop.lake.store import ObjectInfo


class Crash(Exception):
    """A compaction killed at this point."""


class CrashingStore:
    """The store, with the n-th write (put or retire) failing as a killed process would."""

    def __init__(self, inner: ObjectStore, at: int) -> None:
        self.inner, self.at, self.writes = inner, at, 0
        self.uri = inner.uri

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.at:
            raise Crash(f"killed at write {self.at}")

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._write()
        return self.inner.put_if_absent(key, data)

    def retire(self, key: str) -> None:
        self._write()
        self.inner.retire(key)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def copy_to(self, key: str, path: Path) -> None:
        self.inner.copy_to(key, path)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)
