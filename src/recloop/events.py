"""The event schema shared by every stage: tracker, ingest, lake, training, serving, monitor.

One pydantic model validates what arrives; one Arrow schema is what the lake stores. Context
fields are flattened into columns so that readers can project them cheaply.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import pyarrow as pa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

# 1: first layout (no session_id, no context columns, no model_version).
# 2: adds session_id, model_version, page, referrer, device, source.
SCHEMA_VERSION = 2

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
# The lake stores positions as int32: a larger one would fail the whole Arrow column (batch).
INT32_MAX = 2**31 - 1


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    IMPRESSION = "impression"
    LIKE = "like"
    SHARE = "share"
    PURCHASE = "purchase"


# Event types that are about one item; an impression lists the items that were shown.
SINGLE_ITEM_TYPES = frozenset(t for t in EventType if t is not EventType.IMPRESSION)


def strip_query(url: str | None) -> str | None:
    """A URL or path without query string and fragment: they carry search terms, emails and
    tokens, so no stage keeps them (the page is what matters). The lake's writer strips its
    page and referrer columns the same way, vectorised (recloop.ingest.validate)."""
    if url is None:
        return None
    return url.split("?", 1)[0].split("#", 1)[0]


class Context(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    page: str | None = Field(None, max_length=2048)
    referrer: str | None = Field(None, max_length=2048)
    device: str | None = Field(None, max_length=64)


class Event(BaseModel):
    """One user action; user_id (signed in) or visitor_id (anonymous) identifies the actor."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    event_type: EventType
    timestamp: datetime
    user_id: Id | None = None
    visitor_id: Id | None = None
    item_id: Id | None = None
    item_ids: list[Id] | None = Field(None, max_length=500)
    positions: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] | None = Field(None, max_length=500)
    session_id: Id | None = None
    rec_id: Id | None = None
    model_version: Id | None = None
    context: Context = Context()
    source: str = Field("tracker", max_length=32)
    schema_version: int = Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        # Naive timestamps are taken as UTC: trackers that omit the offset send UTC.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
            raise ValueError("timestamp is out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        if self.user_id is None and self.visitor_id is None:
            raise ValueError("an event needs user_id or visitor_id")
        if self.event_type is EventType.IMPRESSION:
            if not self.item_ids:
                raise ValueError("an impression needs item_ids")
            if self.positions is not None and len(self.positions) != len(self.item_ids):
                raise ValueError("positions and item_ids differ in length")
        elif self.item_id is None:
            raise ValueError(f"a {self.event_type.value} event needs item_id")
        return self

    @property
    def actor_id(self) -> str:
        """The id recommendations are keyed by: the user when signed in, else the visitor."""
        return self.user_id or self.visitor_id or ""

    def to_row(self) -> dict[str, Any]:
        """The flat lake row for this event (see EVENT_SCHEMA)."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp,
            "user_id": self.user_id,
            "visitor_id": self.visitor_id,
            "item_id": self.item_id,
            "item_ids": self.item_ids,
            "positions": self.positions,
            "session_id": self.session_id,
            "rec_id": self.rec_id,
            "model_version": self.model_version,
            "page": self.context.page,
            "referrer": self.context.referrer,
            "device": self.context.device,
            "source": self.source,
            "schema_version": self.schema_version,
        }


EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("visitor_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("item_ids", pa.list_(pa.string())),
        pa.field("positions", pa.list_(pa.int32())),
        pa.field("session_id", pa.string()),
        pa.field("rec_id", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("page", pa.string()),
        pa.field("referrer", pa.string()),
        pa.field("device", pa.string()),
        pa.field("source", pa.string()),
        pa.field("schema_version", pa.int16(), nullable=False),
    ]
)


def events_to_table(events: list[Event]) -> pa.Table:
    """Events as an Arrow table in the lake's schema."""
    return pa.Table.from_pylist([e.to_row() for e in events], schema=EVENT_SCHEMA)


def conform(table: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """A table read from any schema_version, in the current schema (missing columns as nulls).

    Older partitions stay readable: columns that did not exist yet are added as nulls, columns
    are cast to the current types, unknown columns are dropped. `columns` projects the result.
    Nullability is relaxed, since an old file may lack a column that is now required.
    """
    fields = [f.with_nullable(True) for f in EVENT_SCHEMA if columns is None or f.name in columns]
    arrays = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in fields
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
