"""A best-effort history sink: the lake write never waits on the feature store.

The weblog Lambda and `recloop ingest` also append users' recent history to the feature store
(DocumentDB in production). That is best-effort: the lake is the record, and the serving path
catches up. The store is built when the first events arrive (not at cold start), and after a
failure (building it or appending) no call is made for `retry_after_s`: a DocumentDB outage
costs one connection timeout per interval, not one per batch. Failures raise from
`append_history`, so the Ingestor counts them in `history_errors`.
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
    """The history store failed recently; the events were not appended."""


class LazyHistorySink:
    """Builds the store with `factory` on the first append; backs off after a failure."""

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
        self.failures = 0

    def append_history(self, events: list[Event]) -> None:
        """Append to the store (built first if needed); raises when it is unavailable."""
        with self._lock:
            now = self._clock()
            if self._failed_at is not None and now - self._failed_at < self.retry_after_s:
                raise HistoryUnavailableError("history store failed recently; next try later")
            try:
                if self._store is None:
                    self._store = self._factory()
                self._store.append_history(events)
            except Exception as exc:
                self._failed_at = now
                self.failures += 1
                log.warning("history store unavailable: %s", exc)
                raise HistoryUnavailableError(f"{type(exc).__name__}: {exc}") from exc
            self._failed_at = None

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
