"""Hour manifests: which objects a reader reads for an hour partition, compacted or not.

A compaction commits generation g of an hour by writing its marker (manifests/.../g<g>.json)
last, only if absent: the marker names the compacted data files, and a sources file written
before it names every raw object those files cover. A reader of the hour reads the newest
marker's data files plus the raw objects listed in the hour that it does not cover (events that
arrived after the compaction), and drops repeated event ids. Without a marker it reads the raw
objects. So a reader sees each event of an hour once, whether it lists before, during or after
a compaction, and a compaction that never wrote its marker changed nothing a reader sees.

Markers and sources files are JSON lines of one shape (generation, token, kind, key, rows,
bytes, sha256), so that Athena reads both through one table (terraform/modules/datalake).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson

from recloop.errors import LakeError
from recloop.lake import layout
from recloop.lake.store import ObjectInfo, ObjectStore


@dataclass(frozen=True)
class ManifestLine:
    generation: int
    token: str
    kind: str  # "data" (in a marker) or "source" (in a sources file)
    key: str
    rows: int | None
    bytes: int
    sha256: str | None


@dataclass(frozen=True)
class Marker:
    """A committed compaction of one hour."""

    hour: datetime
    generation: int
    token: str
    data: tuple[ManifestLine, ...]

    @property
    def rows(self) -> int:
        return sum(line.rows or 0 for line in self.data)


def encode_lines(lines: Iterable[ManifestLine]) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "generation": line.generation,
                "token": line.token,
                "kind": line.kind,
                "key": line.key,
                "rows": line.rows,
                "bytes": line.bytes,
                "sha256": line.sha256,
            }
        )
        + b"\n"
        for line in lines
    )


def decode_lines(data: bytes, where: str) -> list[ManifestLine]:
    try:
        return [ManifestLine(**orjson.loads(raw)) for raw in data.splitlines() if raw.strip()]
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise LakeError(f"{where} is not a lake manifest: {exc}") from exc


def read_marker(store: ObjectStore, hour: datetime, generation: int) -> Marker:
    key = layout.marker_key(hour, generation)
    lines = decode_lines(store.get(key), key)
    tokens = {line.token for line in lines}
    if not lines or len(tokens) != 1 or any(line.kind != "data" for line in lines):
        raise LakeError(f"{key} is not a committed marker (one token, data lines only)")
    return Marker(hour, generation, tokens.pop(), tuple(lines))


def read_sources(store: ObjectStore, marker: Marker) -> set[str]:
    key = layout.sources_key(marker.hour, marker.generation, marker.token)
    return {line.key for line in decode_lines(store.get(key), key)}


@dataclass
class HourListing:
    """What one listing found under an hour's prefixes."""

    hour: datetime
    raw: list[ObjectInfo] = field(default_factory=list)
    markers: list[int] = field(default_factory=list)  # committed generations
    retired: set[int] = field(default_factory=set)

    @property
    def head(self) -> int | None:
        return max(self.markers) if self.markers else None


@dataclass(frozen=True)
class HourPart:
    """What a reader reads for one hour: `keys` in order; the first `compacted` are compacted
    data (unique event ids), the rest raw objects the head marker does not cover."""

    hour: datetime
    keys: tuple[str, ...]
    compacted: int
    generation: int | None
    manifests: tuple[str, ...] = ()  # the marker (and sources file) this plan read


def list_hours(
    store: ObjectStore, lo: datetime | None, hi: datetime | None
) -> dict[datetime, HourListing]:
    """Raw objects and markers of every hour partition overlapping [lo, hi)."""
    hours: dict[datetime, HourListing] = {}
    for prefix in _prefixes(lo, hi):
        for info in store.list(f"events/{prefix}"):
            if layout.EVENT_KEY.match(info.key) and _overlaps(info.key, lo, hi):
                _listing(hours, info.key).raw.append(info)
        for info in store.list(f"manifests/{prefix}"):
            if not _overlaps(info.key, lo, hi):
                continue
            if match := layout.MARKER_KEY.match(info.key):
                _listing(hours, info.key).markers.append(int(match[3]))
            elif match := layout.RETIRED_KEY.match(info.key):
                _listing(hours, info.key).retired.add(int(match[3]))
    return dict(sorted(hours.items()))


def plan(store: ObjectStore, listing: HourListing) -> HourPart:
    """The objects to read for one listed hour (reads the head marker, and its sources file
    only when raw objects are still listed)."""
    head = listing.head
    raw = sorted(info.key for info in listing.raw)
    if head is None:
        return HourPart(listing.hour, tuple(raw), 0, None)
    marker = read_marker(store, listing.hour, head)
    data = tuple(line.key for line in marker.data)
    manifests: tuple[str, ...] = (layout.marker_key(listing.hour, head),)
    covered: set[str] = set()
    if raw:
        covered = read_sources(store, marker)
        manifests += (layout.sources_key(listing.hour, head, marker.token),)
    late = tuple(key for key in raw if key not in covered)
    return HourPart(listing.hour, data + late, len(data), head, manifests)


def plan_window(store: ObjectStore, lo: datetime | None, hi: datetime | None) -> list[HourPart]:
    """Every hour overlapping [lo, hi), in time order, with the objects to read for it."""
    return [plan(store, listing) for listing in list_hours(store, lo, hi).values()]


def _listing(hours: dict[datetime, HourListing], key: str) -> HourListing:
    hour = layout.key_hour(key)
    found = hours.get(hour)
    if found is None:
        found = hours[hour] = HourListing(hour)
    return found


def _overlaps(key: str, lo: datetime | None, hi: datetime | None) -> bool:
    start = layout.key_hour(key)
    return (lo is None or start + layout.HOUR > lo) and (hi is None or start < hi)


def _prefixes(lo: datetime | None, hi: datetime | None) -> Iterator[str]:
    # Day prefixes when the window is bounded and not absurdly long: a listing then touches
    # only the window's days, not the lake's whole history.
    if lo is None or hi is None or hi - lo > timedelta(days=400):
        yield ""
        return
    day = layout.day_start(lo)
    while day < hi:
        yield f"dt={day:%Y-%m-%d}/"
        day += timedelta(days=1)
