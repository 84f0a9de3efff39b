"""Compaction of closed hours: an hour's many small objects become one or a few large ones.

One compaction of a unit (an hour; or an old day, rolling up its hours), generation
g = (committed head or 0) + 1:
  1. list the unit; read the head marker and its sources (what is compacted already);
  2. read the head's data files, then what it does not cover (raw objects; for a day, its
     hours' compacted files too), dropping an event id repeated within an hour (first copy
     wins, the order readers use), and sort by (timestamp, event_id);
  3. write the data files under a random token, then the sources file (every object now
     covered), then the marker g, only if absent: the marker is the commit;
  4. retire what the new generation replaced (covered raw objects, older data files, files of
     compactions that lost or crashed): tagged for S3 lifecycle expiry after a grace period, so
     a reader that planned with the old marker can finish; then write _g<g>.retired.

A crash before step 3's marker leaves unreferenced files and readers as they were; a crash
after it leaves a committed generation whose clean-up the next run finishes. Two compactions of
one unit race for the same marker key and If-None-Match lets one win; the loser retires its own
files. Events that arrive in an hour after its compaction are read as raw objects beside it
until the next run folds them into generation g + 1. A unit is merged in memory: an hour, or for
a roll-up a day (set rollup_after to None where a day of events does not fit the job).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recloop.errors import LakeError
from recloop.events import conform
from recloop.lake import layout
from recloop.lake.layout import Unit
from recloop.lake.manifest import (
    COVERS,
    DATA,
    SOURCE,
    DayListing,
    ManifestLine,
    Marker,
    UnitListing,
    encode_lines,
    list_days,
    plan_hour,
    read_marker,
    read_sources,
)
from recloop.lake.parquet import event_parquet_bytes, read_parquet, sha256
from recloop.lake.store import ObjectStore

log = logging.getLogger(__name__)

# Compacted files aim at this size: large enough that a window is a few GETs, small enough that
# a reader holds one at a time comfortably.
DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
# An hour is closed this long after it ends (late clocks, Kinesis batching windows, retries).
DEFAULT_SETTLE = timedelta(minutes=15)
# Days this long past their end are rolled up into one unit: training windows then read a few
# objects a day even where hours are sparse, while the monitor, which reads the last hours,
# never touches a day-sized file.
DEFAULT_ROLLUP_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class Compaction:
    """What one compaction of one unit did."""

    unit: Unit
    outcome: str  # committed | lost | clean | retired
    generation: int | None
    sources: int = 0  # objects folded in by this run (raw, or an hour's compacted files)
    rows_in: int = 0
    rows_out: int = 0
    files: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    retired: int = 0

    @property
    def hour(self) -> datetime:
        return self.unit.start


HourCompaction = Compaction  # the first name, kept for callers


@dataclass
class _Work:
    """What a compaction folds in: `compacted` (the head's files) then `late`, in reading order;
    `covered`, every object covered once it commits; `covers`, a day's hour generations."""

    head: Marker | None
    compacted: list[str]
    late: list[str]
    covered: set[str]
    sizes: dict[str, int]
    covers: dict[datetime, int]


def compact_hour(
    store: ObjectStore,
    hour: datetime,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    listing: UnitListing | None = None,
) -> Compaction:
    """Compact one hour (see the module docstring); safe to run at any time, twice, or
    concurrently with itself, ingest and readers."""
    unit = layout.unit(hour)
    if listing is None:
        day = list_days(store, unit.start, unit.end).get(layout.day_start(unit.start))
        listing = (day.hours.get(unit.start) if day else None) or UnitListing(unit)
    head = read_marker(store, unit, listing.head) if listing.head is not None else None
    part, covered = plan_hour(store, listing)
    late = list(part.keys[part.compacted :])
    compacted = list(part.keys[: part.compacted])
    sizes = {info.key: info.size for info in listing.raw}
    work = _Work(head, compacted, late, covered | set(late), sizes, {})
    return _run(store, unit, work, listing.retired, target_bytes, [listing])


def compact_day(
    store: ObjectStore, day: datetime, target_bytes: int = DEFAULT_TARGET_BYTES
) -> Compaction:
    """Roll up one closed day: its hours (compacted or raw) become one unit of a few files."""
    unit = layout.unit(day, day=True)
    listing = list_days(store, unit.start, unit.end).get(unit.start) or DayListing(unit.start)
    rollup = listing.rollup or UnitListing(unit)
    hours = list(listing.hours.values())
    sizes = {info.key: info.size for hour in hours for info in hour.raw}
    head = read_marker(store, unit, rollup.head) if rollup.head is not None else None
    covers = dict(head.covers) if head is not None else {}
    covered = read_sources(store, head) if head is not None else set()
    compacted: list[str] = [line.key for line in head.data] if head is not None else []
    late: list[str] = []
    for hour in hours:
        if hour.head is not None and hour.head > covers.get(hour.unit.start, 0):
            part, hour_covered = plan_hour(store, hour)  # newer than the roll-up, or none yet
            late += [key for key in part.keys if key not in covered]
            covered |= hour_covered
            covers[hour.unit.start] = hour.head
        else:
            new = sorted(info.key for info in hour.raw if info.key not in covered)
            late += new
            if new:  # generation 0: the hour held raw objects only; the day records it
                covers.setdefault(hour.unit.start, 0)
    work = _Work(head, compacted, late, covered | set(late), sizes, covers)
    return _run(store, unit, work, rollup.retired, target_bytes, hours)


def compact(
    store: ObjectStore,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    settle: timedelta = DEFAULT_SETTLE,
    target_bytes: int = DEFAULT_TARGET_BYTES,
    rollup_after: timedelta | None = DEFAULT_ROLLUP_AFTER,
    out_of_time: Callable[[], bool] | None = None,
) -> list[Compaction]:
    """Compact every closed hour in [start, end) that has something to do, and roll up the
    days that ended `rollup_after` before `now` (None: never).

    An hour is closed once it ended `settle` before `now` (default: the wall clock); open
    hours are left to ingest. Settled units (compacted, cleaned up, nothing raw beside them)
    cost a listing and nothing else. `out_of_time` is asked before each unit: a run that
    stops (or is killed) part-way leaves the rest to the next run.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    closed_before = now - settle
    hi = closed_before if end is None else min(end, closed_before)
    results = []
    for day_start, day in list_days(store, start, hi).items():
        if out_of_time is not None and out_of_time():
            break
        day_end = day_start + layout.DAY_SPAN
        old = rollup_after is not None and day_end + rollup_after <= now
        whole = (start is None or start <= day_start) and day_end <= hi
        if (old and whole) or day.rollup is not None:
            settled = all(hour.settled for hour in day.hours.values())
            if not (day.rollup is not None and day.rollup.settled and settled):
                results.append(compact_day(store, day_start, target_bytes))
            continue
        for hour, listing in day.hours.items():
            if out_of_time is not None and out_of_time():
                break
            if hour + layout.HOUR <= closed_before and not listing.settled:
                results.append(compact_hour(store, hour, target_bytes, listing))
    return results


def _run(
    store: ObjectStore,
    unit: Unit,
    work: _Work,
    retired: set[int],
    target_bytes: int,
    hours: list[UnitListing],
) -> Compaction:
    head = work.head
    if not work.late:
        if head is not None and head.generation not in retired:
            count = _retire(store, head, work.covered, hours)
            return Compaction(unit, "retired", head.generation, retired=count)
        return Compaction(unit, "clean", head.generation if head else None)

    generation = (head.generation if head else 0) + 1
    token = secrets.token_hex(6)
    table, rows_in = _merged(store, [*work.compacted, *work.late])
    bytes_in = sum(work.sizes.get(key, 0) for key in work.late)
    data = _write_data(store, unit, generation, token, table, target_bytes, bytes_in)
    sources = [
        ManifestLine(generation, token, SOURCE, key, None, work.sizes.get(key, 0), None)
        for key in sorted(work.covered)
    ]
    # A fresh token: this key is always absent.
    store.put_if_absent(layout.sources_key(unit, generation, token), encode_lines(sources))
    covers = [
        ManifestLine(generation, token, COVERS, layout.marker_key(layout.unit(h), g), None, 0, None)
        for h, g in sorted(work.covers.items())
    ]
    stats = {
        "sources": len(work.late),
        "rows_in": rows_in,
        "rows_out": table.num_rows,
        "files": len(data),
        "bytes_in": bytes_in,
        "bytes_out": sum(line.bytes for line in data),
    }
    marker = Marker(unit, generation, token, (*data, *covers))
    if not store.put_if_absent(layout.marker_key(unit, generation), encode_lines(marker.lines)):
        # Another compaction committed this generation first: ours was never visible.
        for line in data:
            store.retire(line.key)
        store.retire(layout.sources_key(unit, generation, token))
        log.info("compaction of %s lost generation %d to another run", unit.path, generation)
        return Compaction(unit, "lost", head.generation if head else None, **stats)
    count = _retire(store, marker, work.covered, hours)
    return Compaction(unit, "committed", generation, retired=count, **stats)


def _merged(store: ObjectStore, keys: Sequence[str]) -> tuple[pa.Table, int]:
    """The unit's events, each id once an hour (first copy in reading order), sorted by time
    and id."""
    tables = []
    for key in keys:
        data = store.get(key)
        try:
            tables.append(conform(read_parquet(data)))
        except (pa.ArrowInvalid, OSError) as exc:
            # A broken object stops the unit's compaction (readers would fail on it too);
            # nothing is committed, nothing is lost.
            raise LakeError(f"cannot compact: {key} is not readable Parquet: {exc}") from exc
    table = pa.concat_tables(tables)
    rows_in = table.num_rows
    ids = pc.dictionary_encode(table.column("event_id").combine_chunks()).indices.to_numpy()
    hours = table.column("timestamp").cast(pa.int64()).to_numpy() // 3_600_000
    codes = (hours - hours.min()) * (int(ids.max()) + 1) + ids if len(ids) else ids
    _, first = np.unique(codes, return_index=True)
    table = table.take(pa.array(np.sort(first)))
    order = pc.sort_indices(table, [("timestamp", "ascending"), ("event_id", "ascending")])
    return table.take(order), rows_in


def _write_data(
    store: ObjectStore,
    unit: Unit,
    generation: int,
    token: str,
    table: pa.Table,
    target_bytes: int,
    bytes_in: int,
) -> list[ManifestLine]:
    # Rows per file from the input's bytes per row: raw objects carry per-file overhead, so
    # the estimate errs towards smaller files, never towards one huge file.
    per_row = max(1, bytes_in) / max(1, table.num_rows)
    rows_per_file = max(1, int(target_bytes / per_row))
    lines = []
    for part, offset in enumerate(range(0, table.num_rows, rows_per_file)):
        chunk = table.slice(offset, rows_per_file)
        body = event_parquet_bytes(chunk)
        key = layout.data_key(unit, generation, token, part)
        store.put_if_absent(key, body)  # a fresh token: always absent
        lines.append(
            ManifestLine(generation, token, DATA, key, chunk.num_rows, len(body), sha256(body))
        )
    return lines


def _retire(store: ObjectStore, marker: Marker, covered: set[str], hours: list[UnitListing]) -> int:
    """Hand what `marker` replaced to lifecycle expiry, then record that it is done."""
    unit = marker.unit
    stale = [info.key for hour in hours for info in hour.raw if info.key in covered]
    # The unit's own older generations and the files of runs that lost or crashed; for a day,
    # also the hour files it rolled up. Files of a newer generation belong to a compaction
    # still running: left alone.
    scopes: list[tuple[Unit, int, str | None]] = [(unit, marker.generation, marker.token)]
    scopes += [(layout.unit(h), g, None) for h, g in marker.covers.items() if g > 0]
    for scope, generation, token in scopes:
        for info in store.list(layout.compacted_prefix(scope)):
            match = layout.DATA_KEY.match(info.key)
            if match is None:
                continue
            file_generation, file_token = int(match[3]), match[4]
            if file_generation < generation or (
                file_generation == generation and file_token != token
            ):
                stale.append(info.key)
    for key in stale:
        store.retire(key)
    store.put_if_absent(layout.retired_key(unit, marker.generation), b"")
    return len(stale)
