"""The FeatureStore contract: users' recent history and segments, items' metadata.

The ingest path appends history as events arrive (`append_history` is its `history_sink`), and
serving reads the latest history at request time, so a click counts in the very next answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from recloop.events import Event, EventType

# Event types that say something about a user's taste; impressions do not.
HISTORY_TYPES = frozenset(
    {EventType.VIEW, EventType.CLICK, EventType.LIKE, EventType.SHARE, EventType.PURCHASE}
)
# Weights per event type when a history becomes a model input (same order as training's).
HISTORY_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 3.0,
    "like": 4.0,
    "share": 4.0,
    "purchase": 5.0,
}
# A history older than this is forgotten (TTL index in DocumentDB, periodic purge in SQLite).
HISTORY_TTL_DAYS = 90


@dataclass(frozen=True)
class HistoryEntry:
    """One taste signal: an item the actor interacted with, newest first in a history."""

    item_id: str
    event_type: str
    timestamp: datetime
    event_id: str


@dataclass(frozen=True)
class ItemFeatures:
    """Content metadata serving ranks with."""

    item_id: str
    title: str | None = None
    categories: tuple[str, ...] = ()
    available: bool = True
    published_at: datetime | None = None


@dataclass
class FeatureStats:
    """Counts an operator can read from /metrics."""

    history_appended: int = 0
    history_duplicates: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class FeatureStore(Protocol):
    """User and content features; every implementation passes tests/functional/test_features."""

    # True when a call waits on the network: the API then runs it in a thread with a deadline.
    blocking_io: bool

    def append_history(self, events: Sequence[Event]) -> None:
        """Record taste events (idempotent by event_id): the Ingestor's history sink."""
        ...

    def recent_history(self, actor_id: str, limit: int = 50) -> list[HistoryEntry]:
        """The actor's latest history, newest first (empty for an unknown actor)."""
        ...

    def upsert_items(self, items: Iterable[ItemFeatures]) -> int:
        """Insert or replace item metadata; returns how many were written."""
        ...

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        """Metadata of the items that are known, by id."""
        ...

    def newest_items(self, limit: int, category: str | None = None) -> list[ItemFeatures]:
        """Available items, newest publish time first (cold start freshness)."""
        ...

    def set_segments(self, actor_id: str, segments: Sequence[str]) -> None:
        """Replace an actor's segments."""
        ...

    def segments(self, actor_id: str) -> list[str]:
        """An actor's segments (empty when unknown)."""
        ...

    def ping(self) -> None:
        """Raise when the store cannot answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def taste_events(events: Iterable[Event]) -> list[Event]:
    """The events that belong in a history: single-item taste signals with an actor."""
    return [e for e in events if e.event_type in HISTORY_TYPES and e.item_id and e.actor_id]


def as_utc(value: datetime) -> datetime:
    """A timezone-aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
