"""FeatureStore on DocumentDB (MongoDB API) through pymongo.

Collections, with their indexes and TTLs defined here (`ensure_indexes`), not by hand:
    history  one document per taste event (_id = event_id, so a redelivery is a no-op);
             (actor_id, ts desc) for the latest history, TTL on ts
    items    one document per item (_id = item_id); (available, published_at desc), categories
    users    one document per actor (_id = actor_id): segments; TTL on updated_at
DocumentDB has no retryable writes, so the client is created with retryWrites=false.

A store can be built while DocumentDB is down (serving starts degraded, the ingest path keeps
writing the lake): the indexes are created at construction when the cluster answers, otherwise
before the first write that reaches it. Reads never wait for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, PyMongoError

from recloop.events import Event
from recloop.serving.errors import BackendError
from recloop.serving.features.base import (
    HISTORY_TTL_DAYS,
    HistoryEntry,
    ItemFeatures,
    as_utc,
    taste_events,
)

log = logging.getLogger(__name__)

USER_TTL_DAYS = 365
_PING_TIMEOUT_S = 2.0
_DUPLICATE_KEY = 11000
_DAY = 86_400


class MongoFeatureStore:
    """FeatureStore on a pymongo database (DocumentDB in production)."""

    blocking_io = True  # network calls: the API runs them in a thread under a deadline

    def __init__(self, database: Any) -> None:
        self.db = database
        self.history = database["history"]
        self.items = database["items"]
        self.users = database["users"]
        self._indexed = False
        try:
            self.ensure_indexes()
        except BackendError as exc:  # down now: the first write that gets through creates them
            log.warning("documentdb indexes not created yet: %s", exc)

    @classmethod
    def from_uri(
        cls, uri: str, timeout_ms: int = 50, database: str = "recloop"
    ) -> MongoFeatureStore:
        """A store on `mongodb://...`; every operation gives up after `timeout_ms`."""
        client: Any = pymongo.MongoClient(
            uri,
            timeoutMS=timeout_ms,
            serverSelectionTimeoutMS=max(timeout_ms, 1000),
            retryWrites=False,
            tz_aware=True,
        )
        try:
            return cls(client.get_database(database))
        except BaseException:  # unreachable at start: do not leak the client's threads
            client.close()
            raise

    def ensure_indexes(self) -> None:
        """Create the indexes and TTLs this store relies on (idempotent)."""
        self._call(self._create_indexes)
        self._indexed = True

    def _before_write(self) -> None:
        if not self._indexed:
            self.ensure_indexes()

    def _create_indexes(self) -> None:
        self.history.create_index(
            [("actor_id", ASCENDING), ("ts", DESCENDING)], name="actor_latest"
        )
        self.history.create_index(
            [("ts", ASCENDING)], name="history_ttl", expireAfterSeconds=HISTORY_TTL_DAYS * _DAY
        )
        self.items.create_index(
            [("available", ASCENDING), ("published_at", DESCENDING)], name="fresh_available"
        )
        self.items.create_index([("categories", ASCENDING)], name="by_category")
        self.users.create_index(
            [("updated_at", ASCENDING)], name="user_ttl", expireAfterSeconds=USER_TTL_DAYS * _DAY
        )

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except PyMongoError as exc:
            raise BackendError("features", f"documentdb call failed: {exc}") from exc

    # ---- history ----------------------------------------------------------------------------

    def append_history(self, events: Sequence[Event]) -> None:
        self.add_history(events)

    def add_history(self, events: Sequence[Event]) -> int:
        """append_history, returning how many events were new."""
        docs = [
            {
                "_id": e.event_id,
                "actor_id": e.actor_id,
                "item_id": e.item_id,
                "event_type": e.event_type.value,
                "ts": as_utc(e.timestamp),
            }
            for e in taste_events(events)
        ]
        if not docs:
            return 0
        self._before_write()
        try:
            self.history.insert_many(docs, ordered=False)
            return len(docs)
        except BulkWriteError as exc:
            # _id is the event id: a duplicate key is a redelivered event, anything else fails.
            errors = exc.details.get("writeErrors", [])
            if any(err.get("code") != _DUPLICATE_KEY for err in errors):
                raise BackendError("features", f"documentdb write failed: {exc}") from exc
            return int(exc.details.get("nInserted", len(docs) - len(errors)))
        except PyMongoError as exc:
            raise BackendError("features", f"documentdb write failed: {exc}") from exc

    def recent_history(self, actor_id: str, limit: int = 50) -> list[HistoryEntry]:
        def query() -> list[dict[str, Any]]:
            cursor = self.history.find({"actor_id": actor_id}).sort("ts", DESCENDING).limit(limit)
            return list(cursor)

        return [
            HistoryEntry(d["item_id"], d["event_type"], as_utc(d["ts"]), str(d["_id"]))
            for d in self._call(query)
        ]

    # ---- items -------------------------------------------------------------------------------

    def upsert_items(self, items: Iterable[ItemFeatures]) -> int:
        written = 0
        self._before_write()
        for it in items:  # publish-time only; replace_one keeps to what DocumentDB supports
            doc = {
                "_id": it.item_id,
                "title": it.title,
                "categories": list(it.categories),
                "available": it.available,
                "published_at": None if it.published_at is None else as_utc(it.published_at),
            }
            self._call(lambda d=doc: self.items.replace_one({"_id": d["_id"]}, d, upsert=True))
            written += 1
        return written

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemFeatures]:
        ids = list(dict.fromkeys(item_ids))
        docs = self._call(lambda: list(self.items.find({"_id": {"$in": ids}})))
        return {str(d["_id"]): _item(d) for d in docs}

    def newest_items(self, limit: int, category: str | None = None) -> list[ItemFeatures]:
        query: dict[str, Any] = {"available": True, "published_at": {"$ne": None}}
        if category is not None:
            query["categories"] = category

        def run() -> list[dict[str, Any]]:
            return list(self.items.find(query).sort("published_at", DESCENDING).limit(limit))

        return [_item(d) for d in self._call(run)]

    # ---- users ---------------------------------------------------------------------------------

    def set_segments(self, actor_id: str, segments: Sequence[str]) -> None:
        update = {"$set": {"segments": list(segments), "updated_at": datetime.now(UTC)}}
        self._before_write()
        self._call(lambda: self.users.update_one({"_id": actor_id}, update, upsert=True))

    def segments(self, actor_id: str) -> list[str]:
        doc = self._call(self.users.find_one, {"_id": actor_id})
        return [] if doc is None else list(doc.get("segments", []))

    def ping(self) -> None:
        # A health check, off the request path: the request deadline (50 ms) would report a
        # busy cluster as down.
        with pymongo.timeout(_PING_TIMEOUT_S):
            self._call(self.db.command, "ping")

    def close(self) -> None:
        self.db.client.close()


def _item(doc: dict[str, Any]) -> ItemFeatures:
    published = doc.get("published_at")
    return ItemFeatures(
        item_id=str(doc["_id"]),
        title=doc.get("title"),
        categories=tuple(doc.get("categories") or ()),
        available=bool(doc.get("available", True)),
        published_at=None if published is None else as_utc(published),
    )
