"""Manifests: which objects a reader reads for a partition, compacted or not.

A compaction commits generation g of a unit (an hour, or an old day rolled up) by writing its
marker (manifests/.../g<g>.json) last, only if absent: the marker names the compacted data
files, and a sources file written before it names every object those files cover. A reader of
an hour reads the newest marker's data files plus the raw objects listed in the hour that it
does not cover (events that arrived after the compaction), and drops repeated event ids within
the hour. Without a marker it reads the raw objects. A day rolled up works the same way one
level up: the day's data files, plus whatever the hours gained since (a newer hour marker, raw
objects the day does not cover). So a reader sees each event of an hour once, whether it lists
before, during or after a compaction, and a compaction that never wrote its marker changed
nothing a reader sees.

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
from recloop.lake.layout import Unit
from recloop.lake.store import ObjectInfo, ObjectStore

DATA = "data"  # a marker's compacted data file
COVERS = "covers"  # a day marker's line: the hour marker (generation) it rolled up
SOURCE = "source"  # a sources file's line: an object the generation covers


@dataclass(frozen=True)
class ManifestLine:
    generation: int
    token: str
    kind: str
    key: str
    rows: int | None
    bytes: int
    sha256: str | None


@dataclass(frozen=True)
class Marker:
    """A committed compaction of one unit."""

    unit: Unit
    generation: int
    token: str
    lines: tuple[ManifestLine, ...]

    @property
    def data(self) -> tuple[ManifestLine, ...]:
        return tuple(line for line in self.lines if line.kind == DATA)

    @property
    def covers(self) -> dict[datetime, int]:
        """For a day: the hours it rolled up, with the generation of each (0: raw only)."""
        out = {}
        for line in self.lines:
            if line.kind == COVERS:
                out[layout.key_unit(line.key).start] = int(line.key.rsplit("/g", 1)[1][:6])
        return out


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


def read_marker(store: ObjectStore, unit: Unit, generation: int) -> Marker:
    key = layout.marker_key(unit, generation)
    lines = decode_lines(store.get(key), key)
    tokens = {line.token for line in lines}
    if not lines or len(tokens) != 1 or any(line.kind not in (DATA, COVERS) for line in lines):
        raise LakeError(f"{key} is not a committed marker (one token, data lines)")
    return Marker(unit, generation, tokens.pop(), tuple(lines))


def read_sources(store: ObjectStore, marker: Marker) -> set[str]:
    key = layout.sources_key(marker.unit, marker.generation, marker.token)
    return {line.key for line in decode_lines(store.get(key), key)}


@dataclass
class UnitListing:
    """What one listing found for a unit: raw objects (hours only), markers, clean-ups."""

    unit: Unit
    raw: list[ObjectInfo] = field(default_factory=list)
    markers: list[int] = field(default_factory=list)  # committed generations
    retired: set[int] = field(default_factory=set)

    @property
    def head(self) -> int | None:
        return max(self.markers) if self.markers else None

    @property
    def settled(self) -> bool:
        """Nothing raw listed, and the head (if any) is cleaned up: no compaction to do."""
        return not self.raw and (self.head is None or self.head in self.retired)


@dataclass
class DayListing:
    day: datetime
    hours: dict[datetime, UnitListing] = field(default_factory=dict)
    rollup: UnitListing | None = None  # the day unit, when it has markers


@dataclass(frozen=True)
class Part:
    """What a reader reads for one unit: `keys` in order; the first `compacted` are compacted
    data (each event id once per hour), the rest objects the head does not cover, each within
    one hour."""

    unit: Unit
    keys: tuple[str, ...]
    compacted: int
    generation: int | None
    manifests: tuple[str, ...] = ()  # the markers and sources files this plan read

    @property
    def hour(self) -> datetime:
        return self.unit.start


# The name the rest of the code knew first; a part is an hour unless the day was rolled up.
HourPart = Part


def list_days(
    store: ObjectStore, lo: datetime | None, hi: datetime | None
) -> dict[datetime, DayListing]:
    """Raw objects and markers of every unit overlapping [lo, hi), by day, in time order."""
    days: dict[datetime, DayListing] = {}
    for prefix in _prefixes(lo, hi):
        for info in store.list(f"events/{prefix}"):
            if layout.EVENT_KEY.match(info.key):
                listing = _unit_listing(days, info.key, lo, hi)
                if listing is not None:
                    listing.raw.append(info)
        for info in store.list(f"manifests/{prefix}"):
            if match := layout.MARKER_KEY.match(info.key):
                listing = _unit_listing(days, info.key, lo, hi)
                if listing is not None:
                    listing.markers.append(int(match[3]))
            elif match := layout.RETIRED_KEY.match(info.key):
                listing = _unit_listing(days, info.key, lo, hi)
                if listing is not None:
                    listing.retired.add(int(match[3]))
    for day in days.values():
        day.hours = dict(sorted(day.hours.items()))
    return dict(sorted(days.items()))


def list_hours(
    store: ObjectStore, lo: datetime | None, hi: datetime | None
) -> dict[datetime, UnitListing]:
    """The hour units overlapping [lo, hi) (raw objects and hour markers), in time order."""
    return {
        hour: listing
        for day in list_days(store, lo, hi).values()
        for hour, listing in day.hours.items()
    }


def plan(store: ObjectStore, listing: UnitListing) -> Part:
    """The objects to read for one listed hour (reads the head marker, and its sources file
    only when raw objects are still listed)."""
    return plan_hour(store, listing)[0]


def plan_hour(store: ObjectStore, listing: UnitListing) -> tuple[Part, set[str]]:
    """The hour's part, and the listed raw objects its head covers."""
    head = listing.head
    raw = sorted(info.key for info in listing.raw)
    if head is None:
        return Part(listing.unit, tuple(raw), 0, None), set()
    marker = read_marker(store, listing.unit, head)
    data = tuple(line.key for line in marker.data)
    manifests: tuple[str, ...] = (layout.marker_key(listing.unit, head),)
    covered: set[str] = set()
    if raw:
        covered = read_sources(store, marker)
        manifests += (layout.sources_key(listing.unit, head, marker.token),)
    late = tuple(key for key in raw if key not in covered)
    return Part(listing.unit, data + late, len(data), head, manifests), covered & set(raw)


def plan_day(store: ObjectStore, day: DayListing) -> list[Part]:
    """The parts to read for a listed day: its hours one by one, or, when the day was rolled
    up, one part with the day's data and whatever its hours gained since."""
    if day.rollup is None or day.rollup.head is None:
        return [plan(store, listing) for listing in day.hours.values()]
    marker = read_marker(store, day.rollup.unit, day.rollup.head)
    data = tuple(line.key for line in marker.data)
    manifests: tuple[str, ...] = (layout.marker_key(marker.unit, marker.generation),)
    covers = marker.covers
    covered: set[str] | None = None  # the day's sources, read only when something may be new
    late: list[str] = []
    for hour, listing in day.hours.items():
        if listing.head is not None and listing.head > covers.get(hour, 0):
            part = plan(store, listing)  # compacted again after the roll-up
            candidates, manifests = list(part.keys), manifests + part.manifests
        else:
            candidates = sorted(info.key for info in listing.raw)
        if candidates and covered is None:
            covered = read_sources(store, marker)
            manifests += (layout.sources_key(marker.unit, marker.generation, marker.token),)
        late += [key for key in candidates if covered is not None and key not in covered]
    return [Part(marker.unit, data + tuple(late), len(data), marker.generation, manifests)]


def day_hours(store: ObjectStore, day: DayListing) -> list[datetime]:
    """The hours of a listed day that hold events: listed ones, and those a roll-up covers."""
    hours = set(day.hours)
    if day.rollup is not None and day.rollup.head is not None:
        hours |= set(read_marker(store, day.rollup.unit, day.rollup.head).covers)
    return sorted(hours)


def plan_window(store: ObjectStore, lo: datetime | None, hi: datetime | None) -> list[Part]:
    """Every unit overlapping [lo, hi), in time order, with the objects to read for it."""
    return [part for day in list_days(store, lo, hi).values() for part in plan_day(store, day)]


def _unit_listing(
    days: dict[datetime, DayListing], key: str, lo: datetime | None, hi: datetime | None
) -> UnitListing | None:
    unit = layout.key_unit(key)
    if not ((lo is None or unit.end > lo) and (hi is None or unit.start < hi)):
        return None
    day_start = layout.day_start(unit.start)
    day = days.get(day_start)
    if day is None:
        day = days[day_start] = DayListing(day_start)
    if unit.day:
        if day.rollup is None:
            day.rollup = UnitListing(unit)
        return day.rollup
    found = day.hours.get(unit.start)
    if found is None:
        found = day.hours[unit.start] = UnitListing(unit)
    return found


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
