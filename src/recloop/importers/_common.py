"""What every importer shares: its result, versioned catalog writes, bad-row bookkeeping."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from recloop.ingest import IngestReport
from recloop.lake import Lake, WrittenObject

BATCH_SIZE = 50_000  # events per ingest batch (one set of lake objects each)
MAX_PROBLEMS = 20  # bad rows listed by line; the rest are counted


@dataclass
class Problems:
    """Rows an importer could not turn into events: counted, the first few by line."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_PROBLEMS:
            self.examples.append(f"{where}: {reason}")


@dataclass
class ImportResult:
    """The ingest report of an import, the catalog tables it wrote, and the rows it rejected."""

    source: str
    report: IngestReport
    catalogs: dict[str, WrittenObject] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)

    def to_dict(self) -> dict[str, Any]:
        """The ingest summary plus source, catalog objects and bad rows."""
        return {
            **self.report.to_dict(),
            "source": self.source,
            "catalog": {
                name: {"key": obj.key, "rows": obj.rows, "created": obj.created}
                for name, obj in self.catalogs.items()
            },
            "bad_rows": self.problems.count,
            "bad_row_examples": self.problems.examples,
        }


def file_digest(*paths: Path) -> str:
    """A short content hash over files: batch ids and catalog versions derive from it."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_catalog(
    lake: Lake, name: str, table: pa.Table, as_of: datetime, label: str
) -> WrittenObject:
    """Write a catalog table under a version that sorts by `as_of` and names its content.

    The lake serves the lexically greatest version as the newest, so the version starts with
    the time the catalog describes; the content hash makes a re-import a no-op.
    """
    sink = io.BytesIO()
    pq.write_table(table, sink)
    digest = hashlib.sha256(sink.getvalue()).hexdigest()[:12]
    stamp = as_of.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return lake.write_catalog(name, table, f"{stamp}-{label}-{digest}")
