"""The data lake: events as hive-partitioned Parquet, quarantine beside them, snapshot manifests.

Layout under the lake URI:
    events/dt=YYYY-MM-DD/hour=HH/<batch>.parquet       accepted events (EVENT_SCHEMA)
    quarantine/dt=YYYY-MM-DD/<batch>.parquet           rejected input, with reason and payload
    catalog/<name>/<version>.parquet                   content metadata, user profiles

Object names come from the batch (for Kinesis: shard id and first/last sequence number) and are
written only if absent, so a redelivered batch writes nothing twice.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recloop.errors import LakeError
from recloop.events import EVENT_SCHEMA, conform
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

_EVENT_KEY = re.compile(r"^events/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet$")
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
    objects: int = 0
    rows: int = 0
    bytes: int = 0


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


def _to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


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
            created = self.store.put_if_absent(key, _to_parquet(part))
            written.append(WrittenObject(key, part.num_rows, created))
        return written

    def write_quarantine(self, table: pa.Table, batch_id: str) -> WrittenObject | None:
        """Write rejected records (QUARANTINE_SCHEMA) under the day they were received."""
        if table.num_rows == 0:
            return None
        table = table.cast(QUARANTINE_SCHEMA)
        day = table.column("received_at")[0].as_py()
        key = f"quarantine/dt={day:%Y-%m-%d}/{safe_name(batch_id)}.parquet"
        created = self.store.put_if_absent(key, _to_parquet(table))
        return WrittenObject(key, table.num_rows, created)

    def write_catalog(self, name: str, table: pa.Table, version: str) -> WrittenObject:
        """Write a catalog table (items, users); readers take the newest version."""
        key = f"catalog/{safe_name(name)}/{safe_name(version)}.parquet"
        created = self.store.put_if_absent(key, _to_parquet(table))
        return WrittenObject(key, table.num_rows, created)

    # ---- reading -------------------------------------------------------------------------

    def event_keys(
        self, start: datetime | date | str | None = None, end: datetime | date | str | None = None
    ) -> list[str]:
        """Event objects whose hour partition overlaps [start, end), in time order."""
        lo, hi = as_utc(start), as_utc(end)
        prefixes = ["events/"]
        if lo is not None and hi is not None and (hi - lo) <= timedelta(days=400):
            days = (hi.date() - lo.date()).days + 1
            prefixes = [f"events/dt={lo.date() + timedelta(days=d)}/" for d in range(days)]
        keys = []
        for prefix in prefixes:
            for info in self.store.list(prefix):
                match = _EVENT_KEY.match(info.key)
                if not match:
                    continue
                hour_start = datetime.fromisoformat(f"{match[1]}T{match[2]}:00:00+00:00")
                if lo is not None and hour_start + timedelta(hours=1) <= lo:
                    continue
                if hi is not None and hour_start >= hi:
                    continue
                keys.append(info.key)
        return sorted(keys)

    def iter_events(
        self,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
        columns: list[str] | None = None,
        snapshot: Snapshot | None = None,
    ) -> Iterator[pa.Table]:
        """Stream [start, end) object by object, projected to `columns`, in the current schema.

        Each object read is appended to `snapshot` with its size and checksum, so the caller
        knows exactly what it consumed. Memory stays bounded by one object at a time.
        """
        lo, hi = as_utc(start), as_utc(end)
        wanted = None if columns is None else sorted({*columns, "timestamp"})
        for key in self.event_keys(lo, hi):
            data = self.store.get(key)
            table = pq.read_table(_source(data), columns=_present(data, wanted))
            if snapshot is not None:
                digest = hashlib.sha256(data).hexdigest()
                snapshot.objects.append(ManifestEntry(key, len(data), digest, table.num_rows))
            table = conform(table, wanted)
            ts = table.column("timestamp")
            mask = None
            if lo is not None:
                mask = pc.greater_equal(ts, pa.scalar(lo, ts.type))
            if hi is not None:
                upper = pc.less(ts, pa.scalar(hi, ts.type))
                mask = upper if mask is None else pc.and_(mask, upper)
            if mask is not None:
                table = table.filter(mask)
            yield table if columns is None else table.select(columns)

    def read_events(
        self,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
        columns: list[str] | None = None,
        dedupe: bool = True,
    ) -> tuple[pa.Table, Snapshot]:
        """All events in [start, end) as one table, and the snapshot of what was read.

        With `dedupe`, an event_id seen twice (the same event delivered in two batches) is
        kept once, first occurrence wins.
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
            pq.read_table(_source(self.store.get(info.key)))
            for info in self.store.list("quarantine/")
            if _QUARANTINE_KEY.match(info.key)
        ]
        return pa.concat_tables(parts) if parts else QUARANTINE_SCHEMA.empty_table()

    def read_catalog(self, name: str) -> pa.Table | None:
        """The newest version of a catalog table, or None when there is none."""
        keys = [info.key for info in self.store.list(f"catalog/{safe_name(name)}/")]
        if not keys:
            return None
        return pq.read_table(_source(self.store.get(max(keys))))

    def summary(self) -> LakeSummary:
        """Partitions with object, row and byte counts; quarantine counts by reason."""
        partitions: dict[tuple[str, str], PartitionSummary] = {}
        for info in self.store.list("events/"):
            match = _EVENT_KEY.match(info.key)
            if not match:
                continue
            part = partitions.setdefault((match[1], match[2]), PartitionSummary(match[1], match[2]))
            part.objects += 1
            part.bytes += info.size
            part.rows += _row_count(self.store.get(info.key))
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
            sorted(partitions.values(), key=lambda p: (p.dt, p.hour)),
            dict(sorted(reasons.items())),
            catalog,
        )


def _source(data: bytes) -> pa.BufferReader:
    """A Parquet source over an Arrow-owned copy of `data`.

    Reading straight from Python bytes lets Arrow's I/O threads hold buffers that point into
    Python objects; one released during interpreter shutdown takes the GIL too late and aborts
    the process (apache/arrow#34314, seen here as exit code 134 after a CLI had finished).
    """
    buffer = pa.allocate_buffer(len(data))
    np.frombuffer(buffer, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return pa.BufferReader(buffer)


def _row_count(data: bytes) -> int:
    return int(pq.ParquetFile(_source(data)).metadata.num_rows)


def _present(data: bytes, columns: list[str] | None) -> list[str] | None:
    # An older file may lack a projected column; read what it has, conform() adds the rest.
    if columns is None:
        return None
    names = set(pq.ParquetFile(_source(data)).schema_arrow.names)
    return [c for c in columns if c in names]
