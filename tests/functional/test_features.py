"""FeatureStore contract, run against every implementation that can run here.

SQLite runs for real. The pymongo implementation runs against mongomock: no DocumentDB (or
MongoDB) server runs on this machine, so mongomock stands in for the wire; the indexes and TTLs
the store creates are checked by reading them back from it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mongomock
import pytest

from recloop.events import Event
from recloop.serving.errors import BackendError
from recloop.serving.features import FeatureStore, ItemFeatures, features_from_uri
from recloop.serving.features.mongo import MongoFeatureStore
from recloop.serving.features.sqlite import SQLiteFeatureStore

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "mongo"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeatureStore]:
    if request.param == "sqlite":
        made: FeatureStore = features_from_uri("sqlite:///" + str(tmp_path / "f.db"))
    else:
        made = MongoFeatureStore(mongomock.MongoClient(tz_aware=True)["recloop"])
    yield made
    made.close()


def event(eid: str, actor: str, item: str, minutes: int, kind: str = "click") -> Event:
    return Event(
        event_id=eid,
        event_type=kind,  # type: ignore[arg-type]
        timestamp=NOW + timedelta(minutes=minutes),
        user_id=actor,
        item_id=item,
    )


def test_history_is_newest_first_and_idempotent(store: FeatureStore) -> None:
    events = [event("e1", "u1", "a", 1), event("e2", "u1", "b", 2), event("e3", "u2", "c", 3)]
    assert store.add_history(events) == 3  # type: ignore[attr-defined]
    assert store.add_history(events) == 0  # type: ignore[attr-defined]  # redelivered: nothing new
    history = store.recent_history("u1")
    assert [h.item_id for h in history] == ["b", "a"]
    assert history[0].event_type == "click" and history[0].timestamp == NOW + timedelta(minutes=2)
    assert store.recent_history("nobody") == []
    assert [h.item_id for h in store.recent_history("u1", limit=1)] == ["b"]


def test_history_events_with_the_same_time_come_latest_written_first(tmp_path: Path) -> None:
    # Two events in the same millisecond (a view, then the click on it): the later write is
    # the newer one. SQLite only: it orders ties by insertion; mongomock has no such rule.
    store = SQLiteFeatureStore(tmp_path / "f.db")
    store.add_history([event("e1", "u1", "a", 1, "view")])
    store.add_history([event("e2", "u1", "b", 1), event("e3", "u1", "c", 0)])
    assert [h.event_id for h in store.recent_history("u1")] == ["e2", "e1", "e3"]
    store.close()


def test_impressions_are_not_history(store: FeatureStore) -> None:
    impression = Event(
        event_id="imp",
        event_type="impression",  # type: ignore[arg-type]
        timestamp=NOW,
        user_id="u1",
        item_ids=["a", "b"],
    )
    store.append_history([impression])
    assert store.recent_history("u1") == []


def test_items_round_trip_and_newest(store: FeatureStore) -> None:
    items = [
        ItemFeatures("a", "A", ("action",), True, NOW - timedelta(days=3)),
        ItemFeatures("b", "B", ("comedy", "drama"), True, NOW - timedelta(days=1)),
        ItemFeatures("c", "C", ("comedy",), False, NOW),
        ItemFeatures("d", None, (), True, None),
    ]
    assert store.upsert_items(items) == 4
    got = store.get_items(["a", "b", "zzz"])
    assert set(got) == {"a", "b"}
    assert got["b"] == items[1]
    assert [i.item_id for i in store.newest_items(10)] == ["b", "a"]  # c unavailable, d undated
    assert [i.item_id for i in store.newest_items(10, category="comedy")] == ["b"]
    store.upsert_items([ItemFeatures("a", "A2", ("action",), False, NOW)])
    assert store.get_items(["a"])["a"].title == "A2"
    assert [i.item_id for i in store.newest_items(10)] == ["b"]


def test_segments(store: FeatureStore) -> None:
    assert store.segments("u1") == []
    store.set_segments("u1", ["sports", "night-owl"])
    store.set_segments("u1", ["sports"])
    assert store.segments("u1") == ["sports"]
    store.ping()


def test_mongo_store_defines_its_indexes_and_ttls() -> None:
    db = mongomock.MongoClient(tz_aware=True)["recloop"]
    MongoFeatureStore(db)
    history = db["history"].index_information()
    assert history["actor_latest"]["key"] == [("actor_id", 1), ("ts", -1)]
    assert history["history_ttl"]["expireAfterSeconds"] == 90 * 86_400
    assert "user_ttl" in db["users"].index_information()
    assert "fresh_available" in db["items"].index_information()


def test_mongo_store_builds_while_documentdb_is_unreachable_and_reads_fail_cleanly() -> None:
    # A closed loopback port: the store must build (serving starts degraded, the Lambda still
    # writes the lake) and each call fail as a BackendError the callers degrade on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    made = MongoFeatureStore.from_uri(f"mongodb://127.0.0.1:{port}/?directConnection=true", 50)
    try:
        assert time.perf_counter() - start < 3.0
        with pytest.raises(BackendError):
            made.recent_history("u1")
        with pytest.raises(BackendError):
            made.append_history([event("e1", "u1", "i1", 0)])
        with pytest.raises(BackendError):
            made.ping()
    finally:
        made.close()


def test_sqlite_uses_wal_and_one_connection_per_thread(tmp_path: Path) -> None:
    store = SQLiteFeatureStore(tmp_path / "f.db")
    store.append_history([event("e1", "u1", "a", 0)])
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn() is conn


def test_a_slow_sqlite_query_is_interrupted_at_its_deadline(tmp_path: Path) -> None:
    from recloop.serving.errors import BackendError

    store = SQLiteFeatureStore(tmp_path / "f.db", timeout_ms=20)
    slow = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    with pytest.raises(BackendError, match="interrupted"):
        store._read(slow, ())


def test_bad_uri_is_a_config_error() -> None:
    from recloop.errors import ConfigError

    with pytest.raises(ConfigError):
        features_from_uri("redis://localhost")


def test_sqlite_items_version_moves_with_any_item_change(tmp_path: Path) -> None:
    store = SQLiteFeatureStore(tmp_path / "f.db")
    start = store.items_version()
    store.add_history([event("e1", "u1", "a", 1)])
    assert store.items_version() == start  # history is not items
    store.upsert_items([ItemFeatures("a", "A"), ItemFeatures("b", "B")])
    after_upsert = store.items_version()
    assert after_upsert > start
    conn = store._conn()  # a writer that bypasses the store's methods is seen too (triggers)
    conn.execute("UPDATE items SET available = 0 WHERE item_id = 'a'")
    assert store.items_version() > after_upsert
    store.close()
