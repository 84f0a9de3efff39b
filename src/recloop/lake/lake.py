"""The data lake: events as hive-partitioned Parquet, quarantine beside them, snapshot manifests.

Layout under the lake URI:
    events/dt=YYYY-MM-DD/hour=HH/<batch>.parquet       accepted events (EVENT_SCHEMA), raw
    compacted/..., manifests/...                       compacted hours (recloop.lake.layout)
    quarantine/dt=YYYY-MM-DD/<batch>.parquet           rejected input, with reason and payload
    catalog/<name>/<version>.parquet                   content metadata, user profiles

Object names come from the batch (for Kinesis: shard id and first/last sequence number) and are
written only if absent, so a redelivered batch writes nothing twice. Readers read an hour by
its manifest (recloop.lake.manifest): compacted or not, each event once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.errors import LakeError
from recloop.events import EVENT_SCHEMA, conform
from recloop.lake.layout import HOUR, key_hour
from recloop.lake.manifest import HourPart, day_hours, list_days, plan_day, plan_window
from recloop.lake.parquet import (
    event_parquet_bytes,
    newest_timestamp,
    parquet_bytes,
    read_parquet,
    row_count,
    sha256,
)
from recloop.lake.store import ObjectStore, store_from_uri

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("payload", pa.binary()),
    ]
)

_QUARANTINE_KEY = re.compile(r"^quarantine/dt=(\d{4}-\d{2}-\d{2})/[^/]+\.parquet$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_name(name: str) -> str:
    """An object-name-safe form of a batch id (no slashes, no spaces)."""
    cleaned = _SAFE_NAME.sub("_", name).strip("._")
    if not cleaned:
        raise LakeError(f"batch id {name!r} has no usable characters")
    return cleaned[:200]


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    size: int
    sha256: str
    rows: int


@dataclass
class Snapshot:
    """Exactly which lake objects a reader read: enough to reproduce or audit a run."""

    lake_uri: str
    start: str | None
    end: str | None
    objects: list[ManifestEntry] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(entry.rows for entry in self.objects)

    @property
    def digest(self) -> str:
        """One checksum over the whole snapshot: equal digests, equal input data."""
        h = hashlib.sha256()
        for entry in sorted(self.objects, key=lambda e: e.key):
            h.update(f"{entry.key}\0{entry.sha256}\n".encode())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": self.rows, "digest": self.digest}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        objects = [ManifestEntry(**entry) for entry in data.get("objects", [])]
        return cls(data["lake_uri"], data.get("start"), data.get("end"), objects)


@dataclass(frozen=True)
class WrittenObject:
    key: str
    rows: int
    created: bool  # False: it existed already (a redelivered batch)


@dataclass
class PartitionSummary:
    dt: str
    hour: str
    objects: int = 0  # objects a reader reads
    rows: int = 0  # rows in them (before an hour's repeated event ids are dropped)
    bytes: int = 0
    generation: int | None = None  # the committed compaction, None when never compacted
    raw_objects: int = 0  # raw objects still listed (covered ones expire by lifecycle)


@dataclass
class LakeSummary:
    uri: str
    partitions: list[PartitionSummary]
    quarantine_by_reason: dict[str, int]
    catalog: dict[str, int]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def quarantined(self) -> int:
        return sum(self.quarantine_by_reason.values())


def as_utc(value: datetime | date | str | None) -> datetime | None:
    """A UTC datetime from a datetime, date or ISO string (naive means UTC); None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Lake:
    """Read and write recloop's data lake on any ObjectStore."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @classmethod
    def from_uri(cls, uri: str, s3_client: Any = None) -> Lake:
        return cls(store_from_uri(uri, s3_client=s3_client))

    @property
    def uri(self) -> str:
        return self.store.uri

    # ---- writing -------------------------------------------------------------------------

    def write_events(self, table: pa.Table, batch_id: str) -> list[WrittenObject]:
        """Write events, one object per hour partition, each only if absent.

        Raises TransientStoreError when a write may succeed on retry; objects already written
        stay, and a retry of the same batch skips them.
        """
        if table.num_rows == 0:
            return []
        table = table.cast(EVENT_SCHEMA)
        name = safe_name(batch_id)
        hours = pc.floor_temporal(table.column("timestamp"), unit="hour")
        written = []
        for hour in pc.unique(hours).to_pylist():
            part = table.filter(pc.equal(hours, pa.scalar(hour, hours.type)))
            key = f"events/dt={hour:%Y-%m-%d}/hour={hour:%H}/{name}.parquet"
            created = self.store.put_if_absent(key, event_parquet_bytes(part))
            written.append(WrittenObject(key, part.num_rows, created))
        return written

    def write_quarantine(self, table: pa.Table, batch_id: str) -> WrittenObject | None:
        """Write rejected records (QUARANTINE_SCHEMA) under the day they were received."""
        if table.num_rows == 0:
            return None
        table = table.cast(QUARANTINE_SCHEMA)
        day = table.column("received_at")[0].as_py()
        key = f"quarantine/dt={day:%Y-%m-%d}/{safe_name(batch_id)}.parquet"
        created = self.store.put_if_absent(key, parquet_bytes(table))
        return WrittenObject(key, table.num_rows, created)

    def write_catalog(self, name: str, table: pa.Table, version: str) -> WrittenObject:
        """Write a catalog table (items, users); readers take the newest version."""
        key = f"catalog/{safe_name(name)}/{safe_name(version)}.parquet"
        created = self.store.put_if_absent(key, parquet_bytes(table))
        return WrittenObject(key, table.num_rows, created)

    # ---- reading -------------------------------------------------------------------------

    def hours(
        self, start: datetime | date | str | None = None, end: datetime | date | str | None = None
    ) -> list[HourPart]:
        """Hour partitions overlapping [start, end), in time order, each with the objects a
        reader reads for it: the committed compaction's files and the raw objects it does not
        cover, or the raw objects of an hour never compacted (see recloop.lake.manifest)."""
        return plan_window(self.store, as_utc(start), as_utc(end))

    def hour_span(
        self, start: datetime | date | str | None = None, end: datetime | date | str | None = None
    ) -> tuple[datetime, datetime] | None:
        """(start of the first, end of the last) hour partition with events in [start, end),
        from listings alone; None when there is none."""
        lo, hi = as_utc(start), as_utc(end)
        days = list(list_days(self.store, lo, hi).values())
        if not days:
            return None
        # Only the first and last days matter (a rolled-up day's hours are in its marker).
        hours = ([h for h in day_hours(self.store, day) if _hour_in(h, lo, hi)] for day in days)
        first = next((found for found in hours if found), None)
        if first is None:
            return None
        for day in reversed(days):
            last = [h for h in day_hours(self.store, day) if _hour_in(h, lo, hi)]
            if last:
                return first[0], last[-1] + HOUR
        return None

    def newest_event(
        self, start: datetime | date | str | None = None, end: datetime | date | str | None = None
    ) -> datetime | None:
        """The newest event timestamp in [start, end), from the newest hours' Parquet footers
        (timestamp statistics), reading an object's rows only when its footer cannot tell."""
        lo, hi = as_utc(start), as_utc(end)
        listed = list_days(self.store, lo, hi).values()
        every = (h for day in reversed(listed) for h in reversed(day_hours(self.store, day)))
        for hour in (h for h in every if _hour_in(h, lo, hi)):
            hour_lo = hour if lo is None else max(hour, lo)
            hour_hi = hour + HOUR if hi is None else min(hour + HOUR, hi)
            tops = [
                top
                for part in plan_window(self.store, hour_lo, hour_hi)
                for key in part.keys
                if (top := newest_timestamp(self.store.get(key), hour_lo, hour_hi)) is not None
            ]
            if tops:
                return max(tops)
        return None

    def event_keys(
        self, start: datetime | date | str | None = None, end: datetime | date | str | None = None
    ) -> list[str]:
        """The objects a reader reads for [start, end), hour by hour in time order."""
        return [key for part in self.hours(start, end) for key in part.keys]

    def iter_events(
        self,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
        columns: list[str] | None = None,
        snapshot: Snapshot | None = None,
    ) -> Iterator[pa.Table]:
        """Stream [start, end) object by object, projected to `columns`, in the current schema.

        Each hour is read once, by its manifest (recloop.lake.manifest), and an event id is
        kept once per hour (the first copy: compacted data, then raw objects in key order).
        Each object read is appended to `snapshot` with its size and checksum, so the caller
        knows exactly what it consumed. Memory stays bounded by one object at a time.
        """
        lo, hi = as_utc(start), as_utc(end)
        wanted = None if columns is None else sorted({*columns, "timestamp", "event_id"})
        for part in plan_window(self.store, lo, hi):
            if snapshot is not None:  # a reproduction plans the hour from the same manifests
                for key in part.manifests:
                    data = self.store.get(key)
                    snapshot.objects.append(ManifestEntry(key, len(data), sha256(data), 0))
            # Ids kept from the part's earlier objects, by hour, when later objects need
            # checking against them: a set, so an hour of thousands of raw objects costs
            # linear time, not a growing is_in per object.
            seen: dict[int, set[str]] = {}
            checked = len(part.keys) > part.compacted
            for index, key in enumerate(part.keys):
                data = self.store.get(key)
                table = read_parquet(data, wanted)
                if snapshot is not None:
                    entry = ManifestEntry(key, len(data), sha256(data), table.num_rows)
                    snapshot.objects.append(entry)
                table = conform(table, wanted)
                if index >= part.compacted:  # compacted data holds each id once an hour
                    hour = int(key_hour(key).timestamp()) // 3600  # a raw object: one hour
                    table = _first_copies(table, seen.setdefault(hour, set()))
                elif checked:
                    _remember(table, seen)
                table = _in_window(table, lo, hi)
                yield table if columns is None else table.select(columns)

    def read_events(
        self,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
        columns: list[str] | None = None,
        dedupe: bool = True,
    ) -> tuple[pa.Table, Snapshot]:
        """All events in [start, end) as one table, and the snapshot of what was read.

        An hour never holds an event id twice (see iter_events); with `dedupe`, an id seen in
        two hours (a resent event with another timestamp) is kept once too, first one wins.
        """
        lo, hi = as_utc(start), as_utc(end)
        snapshot = Snapshot(
            self.uri, lo.isoformat() if lo else None, hi.isoformat() if hi else None
        )
        read_cols = (
            None if columns is None else sorted({*columns, "event_id"}) if dedupe else columns
        )
        parts = list(self.iter_events(lo, hi, read_cols, snapshot))
        fields = [f.with_nullable(True) for f in EVENT_SCHEMA]
        schema = pa.schema(
            fields if read_cols is None else [f for f in fields if f.name in read_cols]
        )
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        if read_cols is not None:
            table = table.select(read_cols)
        if dedupe and table.num_rows:
            ids = table.column("event_id").to_numpy(zero_copy_only=False)
            _, first = np.unique(ids, return_index=True)
            if len(first) < table.num_rows:
                table = table.take(np.sort(first))
        if columns is not None:
            table = table.select(columns)
        return table, snapshot

    def read_quarantine(self) -> pa.Table:
        """Every quarantined record, with reason and payload."""
        parts = [
            read_parquet(self.store.get(info.key))
            for info in self.store.list("quarantine/")
            if _QUARANTINE_KEY.match(info.key)
        ]
        return pa.concat_tables(parts) if parts else QUARANTINE_SCHEMA.empty_table()

    def read_catalog(self, name: str) -> pa.Table | None:
        """The newest version of a catalog table, or None when there is none."""
        keys = [info.key for info in self.store.list(f"catalog/{safe_name(name)}/")]
        if not keys:
            return None
        return read_parquet(self.store.get(max(keys)))

    def summary(self) -> LakeSummary:
        """Hour partitions as readers see them (objects read, rows, bytes, compacted or not);
        quarantine counts by reason; catalog sizes."""
        partitions = []
        for day in list_days(self.store, None, None).values():
            sizes = {info.key: info.size for hour in day.hours.values() for info in hour.raw}
            for part in plan_day(self.store, day):
                start = part.unit.start
                summary = PartitionSummary(
                    f"{start:%Y-%m-%d}",
                    "day" if part.unit.day else f"{start:%H}",
                    generation=part.generation,
                )
                for key in part.keys:
                    data = self.store.get(key)
                    summary.objects += 1
                    summary.rows += row_count(data)
                    summary.bytes += sizes.get(key, len(data))
                hours = [h for h in day.hours.values() if part.unit.day or h.unit == part.unit]
                summary.raw_objects = sum(len(h.raw) for h in hours)
                partitions.append(summary)
        quarantine = self.read_quarantine()
        reasons: dict[str, int] = {}
        for reason in quarantine.column("reason").to_pylist():
            reasons[reason] = reasons.get(reason, 0) + 1
        catalog: dict[str, int] = {}
        for info in self.store.list("catalog/"):
            name = info.key.split("/")[1]
            table = self.read_catalog(name)
            catalog[name] = table.num_rows if table is not None else 0
        return LakeSummary(
            self.uri,
            partitions,
            dict(sorted(reasons.items())),
            catalog,
        )


def _hour_in(hour: datetime, lo: datetime | None, hi: datetime | None) -> bool:
    return (lo is None or hour + HOUR > lo) and (hi is None or hour < hi)


def _hours(table: pa.Table) -> np.ndarray:
    """Each row's hour, as hours since the epoch."""
    ms = table.column("timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(ms // 3_600_000, dtype=np.int64)


def _remember(table: pa.Table, seen: dict[int, set[str]]) -> None:
    """Add a compacted object's ids to `seen`, by hour (a rolled-up day holds 24)."""
    ids = table.column("event_id").to_pylist()
    for hour, event_id in zip(_hours(table).tolist(), ids, strict=True):
        seen.setdefault(hour, set()).add(event_id)


def _first_copies(table: pa.Table, seen: set[str]) -> pa.Table:
    """The rows whose event id is new: not earlier in this table, nor in `seen` (updated)."""
    keep = []
    for row, event_id in enumerate(table.column("event_id").to_pylist()):
        if event_id not in seen:
            seen.add(event_id)
            keep.append(row)
    if len(keep) == table.num_rows:
        return table
    return table.take(pa.array(keep, pa.int64()))


def _in_window(table: pa.Table, lo: datetime | None, hi: datetime | None) -> pa.Table:
    ts = table.column("timestamp")
    mask = None
    if lo is not None:
        mask = pc.greater_equal(ts, pa.scalar(lo, ts.type))
    if hi is not None:
        upper = pc.less(ts, pa.scalar(hi, ts.type))
        mask = upper if mask is None else pc.and_(mask, upper)
    return table if mask is None else table.filter(mask)
