"""The data lake: partitioned Parquet on file:// or s3://, compacted hour by hour."""

from recloop.lake.compaction import (
    Compaction,
    HourCompaction,
    compact,
    compact_day,
    compact_hour,
)
from recloop.lake.lake import (
    QUARANTINE_SCHEMA,
    Lake,
    LakeSummary,
    ManifestEntry,
    Snapshot,
    WrittenObject,
)
from recloop.lake.manifest import HourPart
from recloop.lake.store import LocalStore, ObjectStore, S3Store, store_from_uri

__all__ = [
    "QUARANTINE_SCHEMA",
    "Compaction",
    "HourCompaction",
    "HourPart",
    "Lake",
    "LakeSummary",
    "LocalStore",
    "ManifestEntry",
    "ObjectStore",
    "S3Store",
    "Snapshot",
    "WrittenObject",
    "compact",
    "compact_day",
    "compact_hour",
    "store_from_uri",
]
