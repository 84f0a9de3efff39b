"""Parquet bytes in and out: how the lake writes events and how it hands bytes to Arrow."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Columns with few distinct values per object; ids unique per event (event_id, rec_id) and
# the timestamps gain nothing from a dictionary.
_DICTIONARY = [
    "event_type",
    "user_id",
    "visitor_id",
    "item_id",
    "item_ids",
    "session_id",
    "model_version",
    "page",
    "referrer",
    "device",
    "source",
    "schema_version",
]
# Smaller event objects at no cost to readers (measured in bench/lake.py, docs/benchmarks.md):
# no Arrow schema blob (Parquet's own types read back the same through conform()), statistics
# only where a reader prunes (timestamp), dictionaries only where values repeat, delta encodings
# for the sorted timestamps and the prefix-sharing ids. (A higher zstd level saved ~1% more on
# small objects for ~0.5 ms more per write: not free, so not taken.)
_EVENT_OPTIONS: dict[str, object] = {
    "compression": "zstd",
    "store_schema": False,
    "use_dictionary": _DICTIONARY,
    "write_statistics": ["timestamp"],
    "column_encoding": {"timestamp": "DELTA_BINARY_PACKED", "event_id": "DELTA_BYTE_ARRAY"},
}


def parquet_bytes(table: pa.Table) -> bytes:
    """One Parquet object of any lake table (quarantine, catalog)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def event_parquet_bytes(table: pa.Table) -> bytes:
    """One Parquet object of events (EVENT_SCHEMA columns), as ingest and compaction write."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **_EVENT_OPTIONS)
    return sink.getvalue()


def parquet_source(data: bytes) -> pa.BufferReader:
    """A Parquet source over an Arrow-owned copy of `data`.

    Reading straight from Python bytes lets Arrow's I/O threads hold buffers that point into
    Python objects; one released during interpreter shutdown takes the GIL too late and aborts
    the process (apache/arrow#34314, seen here as exit code 134 after a CLI had finished).
    """
    buffer = pa.allocate_buffer(len(data))
    np.frombuffer(buffer, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return pa.BufferReader(buffer)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_count(data: bytes) -> int:
    return int(pq.ParquetFile(parquet_source(data)).metadata.num_rows)


def read_parquet(data: bytes, columns: list[str] | None = None) -> pa.Table:
    """The object's table, projected to the `columns` it has (an older file may lack one;
    conform() adds it). One ParquetFile, not pq.read_table: the dataset machinery behind
    read_table costs a few milliseconds per object, which is most of reading a small one."""
    parquet = pq.ParquetFile(parquet_source(data))
    if columns is not None:
        names = set(parquet.schema_arrow.names)
        columns = [c for c in columns if c in names]
    return parquet.read(columns=columns)


def newest_timestamp(data: bytes, lo: datetime, hi: datetime) -> datetime | None:
    """The newest event timestamp in [lo, hi) of an event object: from the row groups'
    statistics when they fall inside the window, else from the rows."""
    parquet = pq.ParquetFile(parquet_source(data))
    names = parquet.schema_arrow.names
    if "timestamp" not in names:
        return None
    column = names.index("timestamp")
    lo_ms, hi_ms = _epoch_ms(lo), _epoch_ms(hi)
    logical = parquet.schema.column(column).logical_type.to_json()
    tops: list[int] = []
    for group in range(parquet.metadata.num_row_groups):
        stats = parquet.metadata.row_group(group).column(column).statistics
        if (
            stats is not None
            and stats.has_min_max
            and '"milliseconds"' in logical
            and lo_ms <= stats.max_raw < hi_ms
        ):
            tops.append(int(stats.max_raw))
            continue
        ts = parquet.read_row_group(group, columns=["timestamp"]).column(0)
        ms = ts.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        inside = pc.filter(ms, pc.and_(pc.greater_equal(ms, lo_ms), pc.less(ms, hi_ms)))
        if len(inside):
            tops.append(int(pc.max(inside).as_py()))
    if not tops:
        return None
    return datetime.fromtimestamp(max(tops) / 1000, UTC)


def _epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)
