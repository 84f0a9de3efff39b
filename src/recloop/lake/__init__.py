"""The data lake: partitioned Parquet on file:// or s3://."""

from recloop.lake.lake import (
    QUARANTINE_SCHEMA,
    Lake,
    LakeSummary,
    ManifestEntry,
    Snapshot,
    WrittenObject,
)
from recloop.lake.store import LocalStore, ObjectStore, S3Store, store_from_uri

__all__ = [
    "QUARANTINE_SCHEMA",
    "Lake",
    "LakeSummary",
    "LocalStore",
    "ManifestEntry",
    "ObjectStore",
    "S3Store",
    "Snapshot",
    "WrittenObject",
    "store_from_uri",
]
