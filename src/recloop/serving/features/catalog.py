"""Publish the lake's content catalog into the feature store (architecture, step 4).

The simulator and the importers write content metadata to `catalog/items/` in the lake; serving
ranks with the feature store's copy (titles, categories, availability, publish time). This is
the one place that maps the catalog's columns onto `ItemFeatures`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from recloop.lake import Lake
from recloop.serving.features.base import FeatureStore, ItemFeatures

# Catalog columns that may carry each field, first match wins (simulator, MovieLens, CSV).
_PUBLISHED = ("published_at", "publish_time")
_EXPIRES = ("expires_at", "expiry")


def item_features(table: pa.Table, now: datetime | None = None) -> Iterator[ItemFeatures]:
    """ItemFeatures for each catalog row; an item past its expiry is unavailable at `now`."""
    if "item_id" not in table.column_names:
        raise ValueError("the items catalog has no item_id column")
    now = now or datetime.now(UTC)
    for row in table.to_pylist():
        yield ItemFeatures(
            item_id=str(row["item_id"]),
            title=row.get("title"),
            categories=_categories(row),
            available=_available(row, now),
            published_at=_first(row, _PUBLISHED),
        )


def publish_catalog(lake: Lake, store: FeatureStore, now: datetime | None = None) -> int:
    """Upsert the lake's newest items catalog into `store`; the number of items published."""
    table = lake.read_catalog("items")
    if table is None:
        return 0
    items = list(item_features(table, now))
    store.upsert_items(items)
    return len(items)


def _categories(row: dict[str, Any]) -> tuple[str, ...]:
    if row.get("categories"):
        return tuple(str(c) for c in row["categories"])
    return (str(row["category"]),) if row.get("category") else ()


def _available(row: dict[str, Any], now: datetime) -> bool:
    if row.get("available") is not None:
        return bool(row["available"])
    expires = _first(row, _EXPIRES)
    return expires is None or expires > now


def _first(row: dict[str, Any], names: tuple[str, ...]) -> datetime | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None
