"""A history sink built on first use: the lake write never waits on the feature store.

The weblog Lambda and `recloop ingest` also append users' recent history to the feature store
(DocumentDB in production). That is best-effort: the lake is the record, and the serving path
catches up. Building the store connects and creates indexes, so building it eagerly at cold
start made a DocumentDB outage fail every invocation, lake writes included. Here the store is
built when the first events arrive; a failure to build raises from `append_history` (the
Ingestor counts it in `history_errors`) and is not retried for `retry_after_s`, so an outage
costs one connection timeout per interval, not one per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from recloop.events import Event

log = logging.getLogger(__name__)


class _Store(Protocol):
    def append_history(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


class HistoryUnavailableError(RuntimeError):
    """The history sink could not be built (recently); the events were not appended."""


class LazyHistorySink:
    """Builds the store with `factory` on the first append; retries a failed build later."""

    def __init__(
        self,
        factory: Callable[[], _Store],
        retry_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._store: _Store | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self.build_failures = 0

    def _get(self) -> _Store:
        with self._lock:
            if self._store is not None:
                return self._store
            now = self._clock()
            if self._failed_at is not None and now - self._failed_at < self.retry_after_s:
                raise HistoryUnavailableError("history store unavailable; next try later")
            try:
                self._store = self._factory()
            except Exception as exc:
                self._failed_at = now
                self.build_failures += 1
                log.warning("history store unavailable: %s", exc)
                raise HistoryUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            self._failed_at = None
            return self._store

    def append_history(self, events: list[Event]) -> None:
        """Append to the store, building it first if needed; raises when it is unavailable."""
        self._get().append_history(events)

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
