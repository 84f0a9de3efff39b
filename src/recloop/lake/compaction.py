"""Compaction of closed hours: an hour's many small objects become one or a few large ones.

One compaction of an hour, generation g = (committed head or 0) + 1:
  1. list the hour; read the head marker and its sources (what is compacted already);
  2. read the head's data files, then the raw objects it does not cover, dropping repeated
     event ids (first copy wins, the order readers use), and sort by (timestamp, event_id);
  3. write the data files under a random token, then the sources file (every raw object now
     covered), then the marker g, only if absent: the marker is the commit;
  4. retire what the new generation replaced (covered raw objects, older data files, files of
     compactions that lost or crashed): tagged for S3 lifecycle expiry after a grace period, so
     a reader that planned with the old marker can finish; then write _g<g>.retired.

A crash before step 3's marker leaves unreferenced files and readers as they were; a crash
after it leaves a committed generation whose clean-up the next run finishes. Two compactions of
one hour race for the same marker key and If-None-Match lets one win; the loser retires its own
files. Events that arrive in an hour after its compaction are read as raw objects beside it
until the next run folds them into generation g + 1.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.errors import LakeError
from recloop.events import conform
from recloop.lake import layout
from recloop.lake.manifest import (
    HourListing,
    ManifestLine,
    Marker,
    encode_lines,
    list_hours,
    read_marker,
    read_sources,
)
from recloop.lake.parquet import parquet_bytes, read_parquet, sha256
from recloop.lake.store import ObjectStore

log = logging.getLogger(__name__)

# Compacted files aim at this size: large enough that a window is a few GETs, small enough that
# a reader holds one at a time comfortably.
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
# An hour is closed this long after it ends (late clocks, Kinesis batching windows, retries).
DEFAULT_SETTLE = timedelta(minutes=15)


@dataclass(frozen=True)
class HourCompaction:
    """What one compaction of one hour did."""

    hour: datetime
    outcome: str  # committed | lost | clean | retired
    generation: int | None
    sources: int = 0  # raw objects folded in by this run
    rows_in: int = 0
    rows_out: int = 0
    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    retired: int = 0


def compact_hour(
    store: ObjectStore,
    hour: datetime,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    listing: HourListing | None = None,
) -> HourCompaction:
    """Compact one hour partition (see the module docstring); safe to run at any time, twice,
    or concurrently with itself, ingest and readers."""
    hour = layout.day_start(hour) + timedelta(hours=hour.astimezone(UTC).hour)
    if listing is None:
        listing = list_hours(store, hour, hour + layout.HOUR).get(hour) or HourListing(hour)
    head = listing.head
    marker = read_marker(store, hour, head) if head is not None else None
    raw = {info.key: info.size for info in listing.raw}
    covered = read_sources(store, marker) if marker is not None and raw else set()
    late = sorted(key for key in raw if key not in covered)
    if not late:
        if marker is not None and marker.generation not in listing.retired:
            retired = _retire(store, marker, covered, listing)
            return HourCompaction(hour, "retired", head, retired=retired)
        return HourCompaction(hour, "clean", head)

    generation = (head or 0) + 1
    token = secrets.token_hex(6)
    inputs = [line.key for line in marker.data] if marker is not None else []
    table, rows_in = _merged(store, inputs, late)
    data = _write_data(store, hour, generation, token, table, target_bytes, raw, late)
    sources = [
        ManifestLine(generation, token, "source", key, None, raw.get(key, 0), None)
        for key in sorted(covered | set(late))
    ]
    store.put_if_absent(
        layout.sources_key(hour, generation, token), encode_lines(sources)
    )  # a fresh token: always absent
    stats = {
        "sources": len(late),
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "files": len(data),
        "bytes_in": sum(raw[key] for key in late),
        "bytes_out": sum(line.bytes for line in data),
    }
    if not store.put_if_absent(layout.marker_key(hour, generation), encode_lines(data)):
        # Another compaction committed this generation first: ours was never visible.
        for line in data:
            store.retire(line.key)
        store.retire(layout.sources_key(hour, generation, token))
        log.info("compaction of %s lost generation %d to another run", hour, generation)
        return HourCompaction(hour, "lost", head, **stats)
    committed = Marker(hour, generation, token, tuple(data))
    retired = _retire(store, committed, covered | set(late), listing)
    return HourCompaction(hour, "committed", generation, retired=retired, **stats)


def compact(
    store: ObjectStore,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    settle: timedelta = DEFAULT_SETTLE,
    target_bytes: int = DEFAULT_TARGET_BYTES,
) -> list[HourCompaction]:
    """Compact every closed hour in [start, end) that has something to do.

    An hour is closed once it ended `settle` before `now` (default: the wall clock); open
    hours are left to ingest. Hours whose compaction is committed and cleaned up, with no raw
    objects left beside it, cost one listing and nothing else.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    closed_before = now - settle
    hi = closed_before if end is None else min(end, closed_before)
    results = []
    for hour, listing in list_hours(store, start, hi).items():
        if hour + layout.HOUR > closed_before:
            continue
        if not listing.raw and (listing.head is None or listing.head in listing.retired):
            continue  # nothing new, nothing to clean
        results.append(compact_hour(store, hour, target_bytes, listing))
    return results


def _merged(
    store: ObjectStore, compacted: Sequence[str], raw: Sequence[str]
) -> tuple[pa.Table, int]:
    """The hour's events, each id once (first copy in reading order), sorted by time and id."""
    tables = []
    for key in [*compacted, *raw]:
        data = store.get(key)
        try:
            tables.append(conform(read_parquet(data)))
        except (pa.ArrowInvalid, OSError) as exc:
            # A broken object stops the hour's compaction (readers would fail on it too);
            # nothing is committed, nothing is lost.
            raise LakeError(f"cannot compact: {key} is not readable Parquet: {exc}") from exc
    table = pa.concat_tables(tables)
    rows_in = table.num_rows
    ids = table.column("event_id").combine_chunks()
    _, first = np.unique(pc.dictionary_encode(ids).indices.to_numpy(), return_index=True)
    table = table.take(pa.array(np.sort(first)))
    order = pc.sort_indices(table, [("timestamp", "ascending"), ("event_id", "ascending")])
    return table.take(order), rows_in


def _write_data(
    store: ObjectStore,
    hour: datetime,
    generation: int,
    token: str,
    table: pa.Table,
    target_bytes: int,
    raw: dict[str, int],
    late: Sequence[str],
) -> list[ManifestLine]:
    # Rows per file from the input's bytes per row: raw objects carry per-file overhead, so
    # the estimate errs towards smaller files, never towards one huge file.
    bytes_in = max(1, sum(raw[key] for key in late))
    per_row = bytes_in / max(1, table.num_rows)
    rows_per_file = max(1, int(target_bytes / per_row))
    lines = []
    for part, offset in enumerate(range(0, table.num_rows, rows_per_file)):
        chunk = table.slice(offset, rows_per_file)
        body = parquet_bytes(chunk)
        key = layout.data_key(hour, generation, token, part)
        store.put_if_absent(key, body)  # a fresh token: always absent
        lines.append(
            ManifestLine(generation, token, "data", key, chunk.num_rows, len(body), sha256(body))
        )
    return lines


def _retire(store: ObjectStore, marker: Marker, covered: set[str], listing: HourListing) -> int:
    """Hand what `marker` replaced to lifecycle expiry, then record that it is done."""
    hour = marker.hour
    stale = [info.key for info in listing.raw if info.key in covered]
    for info in store.list(layout.compacted_prefix(hour)):
        match = layout.DATA_KEY.match(info.key)
        if match is None:
            continue
        generation, token = int(match[3]), match[4]
        # Files of a newer generation belong to a compaction still running: leave them.
        if generation < marker.generation or (
            generation == marker.generation and token != marker.token
        ):
            stale.append(info.key)
    for key in stale:
        store.retire(key)
    store.put_if_absent(layout.retired_key(hour, marker.generation), b"")
    return len(stale)
