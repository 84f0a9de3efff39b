"""Where things live in the lake, as key patterns: one module so that writers and readers agree.

    events/dt=YYYY-MM-DD/hour=HH/<batch>.parquet                     raw objects (ingest)
    compacted/dt=YYYY-MM-DD/hour=U/g<gen>-<token>-<part>.parquet     a compaction's output
    manifests/dt=YYYY-MM-DD/hour=U/g<gen>.json                       commit marker (JSON lines)
    manifests/dt=YYYY-MM-DD/hour=U/g<gen>-<token>.sources.json       objects it covers
    manifests/dt=YYYY-MM-DD/hour=U/_g<gen>.retired                   its clean-up is done

U, the compaction unit, is an hour (00..23) or "day": an old day's compacted hours rolled up
into one unit. Every key keeps dt= and hour= as its second and third path parts, so one
pattern reads any key's partition. Names starting with "_" are hidden from Athena.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY_SPAN = timedelta(days=1)

DAY = "day"
EVENT_KEY = re.compile(r"^events/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet$")
DATA_KEY = re.compile(
    r"^compacted/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2}|day)/g(\d{6})-([0-9a-f]+)-\d{3}\.parquet$"
)
MARKER_KEY = re.compile(r"^manifests/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2}|day)/g(\d{6})\.json$")
RETIRED_KEY = re.compile(r"^manifests/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2}|day)/_g(\d{6})\.retired$")


@dataclass(frozen=True, order=True)
class Unit:
    """A compaction unit: one hour, or a whole day (`day` True) rolled up."""

    start: datetime
    day: bool = False

    @property
    def end(self) -> datetime:
        return self.start + (DAY_SPAN if self.day else HOUR)

    @property
    def path(self) -> str:
        return f"dt={self.start:%Y-%m-%d}/hour={DAY if self.day else f'{self.start:%H}'}"


def unit(start: datetime, day: bool = False) -> Unit:
    """The unit of the hour (or, with `day`, the day) that contains `start`, in UTC."""
    start = start.astimezone(UTC)
    floor = start.replace(minute=0, second=0, microsecond=0)
    return Unit(floor.replace(hour=0) if day else floor, day)


def key_unit(key: str) -> Unit:
    """The unit a lake key belongs to (any kind of object)."""
    parts = key.split("/")
    day, hour = parts[1].removeprefix("dt="), parts[2].removeprefix("hour=")
    if hour == DAY:
        return Unit(datetime.fromisoformat(f"{day}T00:00:00+00:00"), True)
    return Unit(datetime.fromisoformat(f"{day}T{hour}:00:00+00:00"))


def key_hour(key: str) -> datetime:
    """The start of the hour partition a raw object belongs to."""
    return key_unit(key).start


def day_start(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def raw_prefix(hour: datetime) -> str:
    return f"events/{unit(hour).path}/"


def compacted_prefix(u: Unit) -> str:
    return f"compacted/{u.path}/"


def manifest_prefix(u: Unit) -> str:
    return f"manifests/{u.path}/"


def marker_key(u: Unit, generation: int) -> str:
    return f"{manifest_prefix(u)}g{generation:06d}.json"


def sources_key(u: Unit, generation: int, token: str) -> str:
    return f"{manifest_prefix(u)}g{generation:06d}-{token}.sources.json"


def retired_key(u: Unit, generation: int) -> str:
    return f"{manifest_prefix(u)}_g{generation:06d}.retired"


def data_key(u: Unit, generation: int, token: str, part: int) -> str:
    return f"{compacted_prefix(u)}g{generation:06d}-{token}-{part:03d}.parquet"
