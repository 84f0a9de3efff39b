"""User and content features: SQLite embedded, DocumentDB (pymongo) in production."""

from __future__ import annotations

from recloop.errors import ConfigError
from recloop.serving.features.base import (
    HISTORY_TYPES,
    HISTORY_WEIGHTS,
    FeatureStore,
    HistoryEntry,
    ItemFeatures,
)


def features_from_uri(uri: str, timeout_ms: int = 50) -> FeatureStore:
    """The FeatureStore a URI names: sqlite:///path or mongodb://... (mongodb+srv:// too)."""
    if uri.startswith("sqlite:///"):
        from recloop.serving.features.sqlite import SQLiteFeatureStore

        return SQLiteFeatureStore.from_uri(uri, timeout_ms=timeout_ms)
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        from recloop.serving.features.mongo import MongoFeatureStore

        return MongoFeatureStore.from_uri(uri, timeout_ms=timeout_ms)
    raise ConfigError(f"unsupported RECLOOP_FEATURES_URI {uri!r}: use sqlite:/// or mongodb://")


__all__ = [
    "HISTORY_TYPES",
    "HISTORY_WEIGHTS",
    "FeatureStore",
    "HistoryEntry",
    "ItemFeatures",
    "features_from_uri",
]
