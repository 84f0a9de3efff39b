"""Where things live in the lake, as key patterns: one module so that writers and readers agree.

    events/dt=YYYY-MM-DD/hour=HH/<batch>.parquet                     raw objects (ingest)
    compacted/dt=YYYY-MM-DD/hour=HH/g<gen>-<token>-<part>.parquet    a compaction's output
    manifests/dt=YYYY-MM-DD/hour=HH/g<gen>.json                      commit marker (JSON lines)
    manifests/dt=YYYY-MM-DD/hour=HH/g<gen>-<token>.sources.json      raw objects it covers
    manifests/dt=YYYY-MM-DD/hour=HH/_g<gen>.retired                  its clean-up is done

Every key keeps dt= and hour= as its second and third path parts, so a key's hour is read the
same way whatever kind of object it names. Names starting with "_" are hidden from Athena.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)

EVENT_KEY = re.compile(r"^events/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.parquet$")
DATA_KEY = re.compile(
    r"^compacted/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/g(\d{6})-([0-9a-f]+)-\d{3}\.parquet$"
)
MARKER_KEY = re.compile(r"^manifests/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/g(\d{6})\.json$")
RETIRED_KEY = re.compile(r"^manifests/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/_g(\d{6})\.retired$")


def hour_path(hour: datetime) -> str:
    """'dt=YYYY-MM-DD/hour=HH' of the hour that starts at `hour` (UTC)."""
    return f"dt={hour:%Y-%m-%d}/hour={hour:%H}"


def key_hour(key: str) -> datetime:
    """The start of the hour partition a lake key belongs to (any kind of object)."""
    parts = key.split("/")
    day, hour = parts[1].removeprefix("dt="), parts[2].removeprefix("hour=")
    return datetime.fromisoformat(f"{day}T{hour}:00:00+00:00")


def day_start(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def raw_prefix(hour: datetime) -> str:
    return f"events/{hour_path(hour)}/"


def compacted_prefix(hour: datetime) -> str:
    return f"compacted/{hour_path(hour)}/"


def manifest_prefix(hour: datetime) -> str:
    return f"manifests/{hour_path(hour)}/"


def marker_key(hour: datetime, generation: int) -> str:
    return f"{manifest_prefix(hour)}g{generation:06d}.json"


def sources_key(hour: datetime, generation: int, token: str) -> str:
    return f"{manifest_prefix(hour)}g{generation:06d}-{token}.sources.json"


def retired_key(hour: datetime, generation: int) -> str:
    return f"{manifest_prefix(hour)}_g{generation:06d}.retired"


def data_key(hour: datetime, generation: int, token: str, part: int) -> str:
    return f"{compacted_prefix(hour)}g{generation:06d}-{token}-{part:03d}.parquet"
