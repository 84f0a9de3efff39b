"""The embedded FeatureStore: one SQLite file in WAL mode, shared by every worker process.

WAL lets the workers' readers run while the ingest path writes. Each thread of a worker (the
event loop, the event sink's writer) opens its own connection once and keeps it; a connection
is never shared between processes (they are opened after the fork, on first use).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recloop.errors import ConfigError
from recloop.events import Event
from recloop.serving.errors import BackendError
from recloop.serving.features.base import (
    HISTORY_TTL_DAYS,
    HistoryEntry,
    ItemFeatures,
    as_utc,
    taste_events,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    event_id   TEXT PRIMARY KEY,
    actor_id   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    ts         REAL NOT NULL
);
-- Ascending, read backwards: (ts DESC, rowid DESC) straight from the index, where the older
-- (actor_id, ts DESC) index needed a sort step per read (27 -> 20 us at 20 events a user).
CREATE INDEX IF NOT EXISTS history_actor_time ON history (actor_id, ts);
DROP INDEX IF EXISTS history_actor_ts;
CREATE INDEX IF NOT EXISTS history_ts ON history (ts);
CREATE TABLE IF NOT EXISTS items (
    item_id      TEXT PRIMARY KEY,
    title        TEXT,
    categories   TEXT NOT NULL DEFAULT '[]',
    available    INTEGER NOT NULL DEFAULT 1,
    published_at REAL
);
CREATE INDEX IF NOT EXISTS items_published ON items (available, published_at DESC);
-- Bumped by any change to items, whoever writes: readers cache item rows until it moves.
CREATE TABLE IF NOT EXISTS items_version (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO items_version VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS items_inserted AFTER INSERT ON items
BEGIN UPDATE items_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS items_updated AFTER UPDATE ON items
BEGIN UPDATE items_version SET version = version + 1; END;
CREATE TRIGGER IF NOT EXISTS items_deleted AFTER DELETE ON items
BEGIN UPDATE items_version SET version = version + 1; END;
CREATE TABLE IF NOT EXISTS users (
    actor_id   TEXT PRIMARY KEY,
    segments   TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);
"""
# The progress handler runs every this many SQLite VM steps to enforce the call deadline.
_PROGRESS_STEPS = 2_000
# Expired history is purged at most this often (seconds) by the writer.
_PURGE_EVERY = 600.0


class SQLiteFeatureStore:
    """FeatureStore on SQLite (`sqlite:///path`)."""

    blocking_io = False  # a local file: calls are inlined, the deadline is the progress handler

    def __init__(self, path: Path | str, timeout_ms: int = 50) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_ms / 1000.0
        self._local = threading.local()
        self._last_purge = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()  # create the schema once, up front
        try:
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    @classmethod
    def from_uri(cls, uri: str, timeout_ms: int = 50) -> SQLiteFeatureStore:
        """`sqlite:///relative/or/absolute/path.db` (four slashes for an absolute path)."""
        path = uri.removeprefix("sqlite:///")
        if not path or path == uri:
            raise ConfigError(f"not a sqlite:/// URI: {uri!r}")
        return cls(path, timeout_ms=timeout_ms)

    # ---- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=max(self.timeout_s, 1.0), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
            local.deadline = float("inf")
            local.conn.set_progress_handler(
                lambda: int(time.monotonic() > local.deadline), _PROGRESS_STEPS
            )
        local.deadline = time.monotonic() + self.timeout_s
        conn: sqlite3.Connection = local.conn
        return conn

    def _read(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise BackendError("features", f"sqlite read failed: {exc}") from exc

    # ---- history ----------------------------------------------------------------------------

    def append_history(self, events: Sequence[Event]) -> None:
        self.add_history(events)

    def add_history(self, events: Sequence[Event]) -> int:
        """append_history, returning how many events were new."""
        rows = [
            (e.event_id, e.actor_id, e.item_id, e.event_type.value, as_utc(e.timestamp).timestamp())
            for e in taste_events(events)
        ]
        if not rows:
            return 0

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?)", rows)
            return conn.total_changes - before

        added = self._write(insert)
        self._maybe_purge()
        return added

    def _write(self, body: Callable[[sqlite3.Connection], int]) -> int:
        """Run `body` in one IMMEDIATE transaction; writes are never interrupted half-way."""
        conn = self._conn()
        self._local.deadline = float("inf")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            raise BackendError("features", f"sqlite write failed: {exc}") from exc

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < _PURGE_EVERY:
            return
        self._last_purge = now
        cutoff = (datetime.now(UTC) - timedelta(days=HISTORY_TTL_DAYS)).timestamp()
        self._write(
            lambda conn: conn.execute("DELETE FROM history WHERE ts < ?", (cutoff,)).rowcount
        )

    def recent_history(self, actor_id: str, limit: int = 50) -> list[HistoryEntry]:
        rows = self._read(
            "SELECT item_id, event_type, ts, event_id FROM history WHERE actor_id = ? "
            "ORDER BY ts DESC, rowid DESC LIMIT ?",
            (actor_id, limit),
        )
        return [
            HistoryEntry(str(i), str(t), datetime.fromtimestamp(float(ts), UTC), str(eid))  # type: ignore[arg-type]
            for i, t, ts, eid in rows
        ]

    # ---- items -------------------------------------------------------------------------------

    def upsert_items(self, items: Iterable[ItemFeatures]) -> int:
        rows = [
            (
                it.item_id,
                it.title,
                json.dumps(list(it.categories)),
                int(it.available),
                None if it.published_at is None else as_utc(it.published_at).timestamp(),
            )
            for it in items
        ]
        return self._write(
            lambda conn: (
                conn.executemany(
                    "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)", rows
                ).rowcount
            )
        )

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        ids = list(dict.fromkeys(item_ids))
        out: dict[str, ItemFeatures] = {}
        # SQLite caps bound parameters; 900 stays under every build's limit.
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self._read(f"SELECT * FROM items WHERE item_id IN ({marks})", chunk):
                item = _item(row)
                out[item.item_id] = item
        return out

    def items_version(self) -> int:
        """A number that changes whenever any item row changes (serving caches rows until then)."""
        rows = self._read("SELECT version FROM items_version", ())
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def newest_items(self, limit: int, category: str | None = None) -> list[ItemFeatures]:
        if category is None:
            rows = self._read(
                "SELECT * FROM items WHERE available = 1 AND published_at IS NOT NULL "
                "ORDER BY published_at DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._read(
                "SELECT items.* FROM items, json_each(items.categories) AS c "
                "WHERE available = 1 AND published_at IS NOT NULL AND c.value = ? "
                "ORDER BY published_at DESC LIMIT ?",
                (category, limit),
            )
        return [_item(row) for row in rows]

    # ---- users ---------------------------------------------------------------------------------

    def set_segments(self, actor_id: str, segments: Sequence[str]) -> None:
        row = (actor_id, json.dumps(list(segments)), time.time())
        self._write(
            lambda conn: conn.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", row).rowcount
        )

    def segments(self, actor_id: str) -> list[str]:
        rows = self._read("SELECT segments FROM users WHERE actor_id = ?", (actor_id,))
        return list(json.loads(str(rows[0][0]))) if rows else []

    def ping(self) -> None:
        self._read("SELECT 1", ())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
            self._local.pid = None


@functools.lru_cache(maxsize=4096)
def _categories(text: str) -> tuple[str, ...]:
    # A catalogue has few distinct category lists, and serving reads item rows on most
    # requests: json.loads per row was a quarter of the metadata read's cost.
    return tuple(json.loads(text))


def _item(row: tuple[object, ...]) -> ItemFeatures:
    item_id, title, categories, available, published = row
    return ItemFeatures(
        item_id=str(item_id),
        title=None if title is None else str(title),
        categories=_categories(str(categories)),
        available=bool(available),
        published_at=None if published is None else datetime.fromtimestamp(float(published), UTC),  # type: ignore[arg-type]
    )
