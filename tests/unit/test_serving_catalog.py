"""Publishing the lake's items catalog into the feature store: what serving ranks with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from recloop.lake import Lake
from recloop.serving.features import features_from_uri
from recloop.serving.features.catalog import item_features, publish_catalog
from recloop.sim import World

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_simulated_catalog_reaches_the_feature_store(tmp_path: Path) -> None:
    world = World(seed=5, n_users=50, n_items=40)
    lake = Lake.from_uri((tmp_path / "lake").as_uri())
    lake.write_catalog("items", world.catalog_table(), "v1")
    store = features_from_uri("sqlite:///" + str(tmp_path / "f.db"), timeout_ms=5_000)
    try:
        assert publish_catalog(lake, store, now=NOW) == 40
        catalog = {row["item_id"]: row for row in world.catalog_table().to_pylist()}
        stored = store.get_items(list(catalog))
        assert set(stored) == set(catalog)
        some = next(iter(catalog.values()))
        assert stored[some["item_id"]].title == some["title"]
        assert stored[some["item_id"]].categories == tuple(some["categories"])
    finally:
        store.close()


def test_no_catalog_publishes_nothing(tmp_path: Path) -> None:
    lake = Lake.from_uri((tmp_path / "lake").as_uri())
    store = features_from_uri("sqlite:///" + str(tmp_path / "f.db"))
    try:
        assert publish_catalog(lake, store) == 0
    finally:
        store.close()


def test_expired_items_are_unavailable_and_genres_become_categories() -> None:
    table = pa.table(
        {
            "item_id": [1, 2],
            "title": ["Old", "New"],
            "category": ["drama", "comedy"],
            "publish_time": pa.array([NOW - timedelta(days=9)] * 2, pa.timestamp("ms", tz="UTC")),
            "expires_at": pa.array([NOW - timedelta(days=1), None], pa.timestamp("ms", tz="UTC")),
        }
    )
    old, new = item_features(table, now=NOW)
    assert (old.item_id, old.available, old.categories) == ("1", False, ("drama",))
    assert (new.item_id, new.available, new.categories) == ("2", True, ("comedy",))
    assert new.published_at == NOW - timedelta(days=9)


def test_a_catalog_without_item_ids_is_refused() -> None:
    with pytest.raises(ValueError, match="no item_id column"):
        list(item_features(pa.table({"title": ["x"]})))
