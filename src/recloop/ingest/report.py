"""IngestReport: where every input unit went (written, filtered, quarantined, duplicate)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    merged = Counter(a)
    merged.update(b)
    return dict(sorted(merged.items()))


@dataclass
class IngestReport:
    """Accounting for one ingest call.

    The unit counted is one event candidate: a JSON object, an NDJSON line, a Logstash event, an
    access-log line, or a whole record that could not be decoded at all. Each unit ends as
    exactly one of written, filtered (by reason), quarantined (by reason), duplicate, or
    `failed` (its lake write failed transiently; its source record is in `failed_ids` and must
    be retried), so `accounted == received` always holds.
    """

    received: int = 0
    written: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)
    history_errors: int = 0
    objects: list[str] = field(default_factory=list)  # lake keys created by this call
    newest_event: datetime | None = None  # newest written event time, for ingest lag

    @property
    def filtered_total(self) -> int:
        return sum(self.filtered.values())

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @property
    def accounted(self) -> int:
        """Units with a known fate; equals `received` for every report the Ingestor returns."""
        return (
            self.written
            + self.filtered_total
            + self.quarantined_total
            + self.duplicates
            + self.failed
        )

    def to_dict(self) -> dict[str, Any]:
        """The public summary: exactly received, written, filtered, quarantined, duplicates."""
        return {
            "received": self.received,
            "written": self.written,
            "filtered": dict(sorted(self.filtered.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "duplicates": self.duplicates,
        }

    def __add__(self, other: IngestReport) -> IngestReport:
        if not isinstance(other, IngestReport):
            return NotImplemented
        newest = [t for t in (self.newest_event, other.newest_event) if t is not None]
        return IngestReport(
            received=self.received + other.received,
            written=self.written + other.written,
            filtered=_merge(self.filtered, other.filtered),
            quarantined=_merge(self.quarantined, other.quarantined),
            duplicates=self.duplicates + other.duplicates,
            failed=self.failed + other.failed,
            failed_ids=[*self.failed_ids, *other.failed_ids],
            history_errors=self.history_errors + other.history_errors,
            objects=[*self.objects, *other.objects],
            newest_event=max(newest) if newest else None,
        )
