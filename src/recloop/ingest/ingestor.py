"""The Ingestor: decode, apply the business rules, validate, dedupe, write, account.

Every unit of input ends as exactly one of written, filtered (reason), quarantined (reason and
raw payload, in the lake's quarantine), duplicate, or failed (its write failed transiently and
its source record id is reported so the caller can retry it).
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from recloop.config import Settings, get_settings
from recloop.errors import TransientStoreError
from recloop.events import Event
from recloop.ingest.accesslog import parse_access_log
from recloop.ingest.decode import Candidate, Kind, Rejected, Skipped, decode_record
from recloop.ingest.files import line_chunks, open_input
from recloop.ingest.report import IngestReport
from recloop.ingest.rules import Rules
from recloop.ingest.validate import events_table, validate_many
from recloop.lake import QUARANTINE_SCHEMA, Lake

log = logging.getLogger(__name__)

# Names one lake object from the ids of the records whose units it holds (in input order).
ObjectNamer = Callable[[Sequence[str]], str]


class HistorySink(Protocol):
    """Receives newly written events (the feature store's real-time path)."""

    def append_history(self, events: list[Event]) -> None: ...


@dataclass
class _Batch:
    """Units of one batch on their way through the pipeline, each tagged with its record."""

    source_ids: list[str] = field(default_factory=list)
    received: int = 0
    candidates: list[Any] = field(default_factory=list)  # dicts or Events to validate
    candidate_src: list[int] = field(default_factory=list)
    candidate_text: list[str | None] = field(default_factory=list)
    rejected: list[tuple[int, Rejected]] = field(default_factory=list)
    filtered: Counter[str] = field(default_factory=Counter)


class Ingestor:
    """Turns raw records or event objects into lake objects, accounting for every unit."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings | None = None,
        history_sink: HistorySink | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.lake = lake
        self.settings = settings or get_settings()
        self.history_sink = history_sink
        self.rules = Rules(self.settings)
        self._clock = clock or (lambda: datetime.now(UTC))

    # ---- public entry points ---------------------------------------------------------------

    def ingest_records(
        self,
        records: Iterable[tuple[str, bytes]],
        batch_id: str,
        object_name: ObjectNamer | None = None,
        *,
        check_age: bool = True,
    ) -> IngestReport:
        """Ingest raw records (source id, bytes) as one batch.

        Transient write failures do not raise: the ids of the records whose units were in a
        failed object are in `report.failed_ids`. Permanent lake errors raise.
        `object_name` names each lake object from the ids of the records it holds (default:
        the batch id); `check_age=False` accepts events older than max_event_age_days.
        """
        batch = _Batch()
        limit = self.settings.max_record_bytes
        with _gc_paused():
            for source_id, raw in records:
                src = len(batch.source_ids)
                batch.source_ids.append(source_id)
                for unit in decode_record(raw, limit):
                    batch.received += 1
                    self._route(batch, src, unit)
            return self._finish(batch, object_name or _fixed_name(batch_id), check_age)

    def ingest_events(
        self, events: Iterable[Event | dict[str, Any]], batch_id: str, chunk_size: int = 100_000
    ) -> IngestReport:
        """Ingest events from importers and the simulator (historical: no age limit).

        Chunks of `chunk_size` are written as `<batch_id>-<n>`, so a deterministic input and
        batch id make a re-run write nothing twice. Raises TransientStoreError when some write
        failed after the rest was written; re-running the same call completes it.
        """
        report = IngestReport()
        for n, chunk in enumerate(_chunks(events, chunk_size)):
            name = f"{batch_id}-{n:05d}"
            batch = _Batch()
            for i, event in enumerate(chunk):
                batch.source_ids.append(f"{name}:{i}")
                batch.received += 1
                shaped = event if isinstance(event, Event) else self.rules.tracker_event(event)
                if isinstance(shaped, Skipped):
                    batch.filtered[shaped.reason] += 1
                else:
                    self._add_candidate(batch, i, shaped, None)
            with _gc_paused():
                report += self._finish(batch, _fixed_name(name), check_age=False)
        _raise_if_failed(report)
        return report

    def ingest_file(
        self,
        path: str | Path,
        chunk_size: int = 20_000,
        *,
        check_age: bool = True,
        on_chunk: Callable[[int, IngestReport], None] | None = None,
    ) -> IngestReport:
        """Ingest a file of JSON lines, Logstash events or access-log lines ('-' is stdin).

        The file is streamed in chunks of `chunk_size` lines, each a batch whose id is derived
        from its content, so memory stays bounded and re-running a file writes nothing twice.
        `on_chunk(bytes_read, chunk_report)` reports progress. Raises TransientStoreError when
        a write failed after the rest was written; re-running completes it.
        """
        report = IngestReport()
        label = "stdin" if str(path) == "-" else Path(path).name
        with open_input(path) as stream:
            for chunk in line_chunks(stream, label, chunk_size):
                part = self.ingest_records(chunk.records, chunk.batch_id, check_age=check_age)
                report += part
                if on_chunk is not None:
                    on_chunk(chunk.bytes_read, part)
        _raise_if_failed(report)
        return report

    # ---- pipeline --------------------------------------------------------------------------

    def _route(self, batch: _Batch, src: int, unit: Candidate | Rejected | Skipped) -> None:
        if isinstance(unit, Rejected):
            batch.rejected.append((src, unit))
        elif isinstance(unit, Skipped):
            batch.filtered[unit.reason] += 1
        elif unit.kind is Kind.EVENT:
            shaped = self.rules.tracker_event(unit.data)
            if isinstance(shaped, Skipped):
                batch.filtered[shaped.reason] += 1
            else:
                self._add_candidate(batch, src, shaped, unit.text)
        else:
            if unit.kind is Kind.LOGSTASH:
                access = self.rules.log_from_logstash(unit.data, unit.text)
            else:
                parsed = parse_access_log(unit.data)
                access = parsed or Rejected(
                    "unsupported_format", "not JSON and not an access-log line", unit.text.encode()
                )
            if isinstance(access, Rejected):
                batch.rejected.append((src, access))
                return
            view = self.rules.view_from_log(access)
            if isinstance(view, Skipped):
                batch.filtered[view.reason] += 1
            else:
                self._add_candidate(batch, src, view, unit.text)

    @staticmethod
    def _add_candidate(batch: _Batch, src: int, item: Any, text: str | None) -> None:
        batch.candidates.append(item)
        batch.candidate_src.append(src)
        batch.candidate_text.append(text)

    def _finish(self, batch: _Batch, namer: ObjectNamer, check_age: bool) -> IngestReport:
        report = IngestReport(received=batch.received, filtered=dict(batch.filtered))
        events, sources = self._validated(batch, check_age)
        report.duplicates, events, sources = _dedupe(events, sources)
        failed = self._write_events(batch, events, sources, namer, report)
        failed |= self._write_quarantine(batch, namer, report)
        report.failed_ids = [batch.source_ids[i] for i in sorted(failed)]
        return report

    def _validated(self, batch: _Batch, check_age: bool) -> tuple[list[Event], list[int]]:
        dicts = [c for c in batch.candidates if not isinstance(c, Event)]
        checked = iter(validate_many(dicts))
        now = self._clock()
        oldest = now - timedelta(days=self.settings.max_event_age_days) if check_age else None
        newest = now + timedelta(seconds=self.settings.max_clock_skew_seconds)
        events: list[Event] = []
        sources: list[int] = []
        for i, candidate in enumerate(batch.candidates):
            result = candidate if isinstance(candidate, Event) else next(checked)
            src = batch.candidate_src[i]
            if isinstance(result, str):
                batch.rejected.append((src, self._reject(batch, i, "invalid_event", result)))
            elif oldest is not None and result.timestamp < oldest:
                reason = f"{result.timestamp.isoformat()} is before {oldest.isoformat()}"
                batch.rejected.append((src, self._reject(batch, i, "too_old", reason)))
            elif result.timestamp > newest:
                reason = f"{result.timestamp.isoformat()} is after {newest.isoformat()}"
                batch.rejected.append((src, self._reject(batch, i, "future_timestamp", reason)))
            else:
                events.append(result)
                sources.append(src)
        return events, sources

    @staticmethod
    def _reject(batch: _Batch, i: int, reason: str, detail: str) -> Rejected:
        text = batch.candidate_text[i]
        if text is None:  # an object handed to ingest_events: keep what it was
            candidate = batch.candidates[i]
            row = candidate.to_row() if isinstance(candidate, Event) else candidate
            text = _dumps(row)
        return Rejected(reason, detail[:500], text.encode("utf-8", "surrogatepass"))

    def _write_events(
        self,
        batch: _Batch,
        events: list[Event],
        sources: list[int],
        namer: ObjectNamer,
        report: IngestReport,
    ) -> set[int]:
        """Write one object per hour; returns the records whose object failed transiently."""
        failed: set[int] = set()
        by_hour: dict[datetime, list[int]] = defaultdict(list)
        for i, event in enumerate(events):
            by_hour[event.timestamp.replace(minute=0, second=0, microsecond=0)].append(i)
        fresh: list[Event] = []
        for hour in sorted(by_hour):
            members = by_hour[hour]
            srcs = sorted({sources[i] for i in members})
            name = namer([batch.source_ids[s] for s in srcs])
            part = [events[i] for i in members]
            try:
                written = self.lake.write_events(events_table(part), name)
            except TransientStoreError as exc:
                log.warning("event write for %s hour %s failed: %s", name, hour, exc)
                report.failed += len(part)
                failed.update(srcs)
                continue
            for obj in written:
                if obj.created:
                    report.written += obj.rows
                    report.objects.append(obj.key)
                    fresh.extend(part)
                else:  # the object exists: a redelivered batch, nothing new
                    report.duplicates += obj.rows
        if fresh:
            report.newest_event = max(e.timestamp for e in fresh)
            self._append_history(fresh, report)
        return failed

    def _write_quarantine(
        self, batch: _Batch, namer: ObjectNamer, report: IngestReport
    ) -> set[int]:
        """Write the rejected units with reason and payload; returns failed records."""
        if not batch.rejected:
            return set()
        srcs = sorted({src for src, _ in batch.rejected})
        name = namer([batch.source_ids[s] for s in srcs])
        now = self._clock()
        table = pa.Table.from_pydict(
            {
                "received_at": [now] * len(batch.rejected),
                "source_id": [batch.source_ids[src] for src, _ in batch.rejected],
                "reason": [r.reason for _, r in batch.rejected],
                "detail": [r.detail for _, r in batch.rejected],
                "payload": [r.payload for _, r in batch.rejected],
            },
            schema=QUARANTINE_SCHEMA,
        )
        try:
            self.lake.write_quarantine(table, name)
        except TransientStoreError as exc:
            log.warning("quarantine write for %s failed: %s", name, exc)
            report.failed += len(batch.rejected)
            return set(srcs)
        report.quarantined = dict(sorted(Counter(r.reason for _, r in batch.rejected).items()))
        return set()

    def _append_history(self, events: list[Event], report: IngestReport) -> None:
        if self.history_sink is None:
            return
        try:
            self.history_sink.append_history(events)
        except Exception:  # the lake write stands; the sink is best-effort and catches up later
            log.exception("history sink failed for %d events", len(events))
            report.history_errors += 1


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    A batch allocates tens of thousands of dicts and models, which triggers repeated full
    collections that scan every live object: measured 4x slower validation (bench/ingest.py).
    Nothing a batch allocates forms reference cycles, so reference counting frees it all.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fixed_name(name: str) -> ObjectNamer:
    def namer(_source_ids: Sequence[str]) -> str:
        return name

    return namer


def _dedupe(events: list[Event], sources: list[int]) -> tuple[int, list[Event], list[int]]:
    """Keep the first event per event_id; the number dropped is the duplicate count."""
    seen: set[str] = set()
    kept: list[Event] = []
    kept_src: list[int] = []
    for event, src in zip(events, sources, strict=True):
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        kept.append(event)
        kept_src.append(src)
    return len(events) - len(kept), kept, kept_src


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


def _raise_if_failed(report: IngestReport) -> None:
    if report.failed:
        raise TransientStoreError(
            f"{report.failed} units were not written (transient store errors); "
            "re-run the same input to complete it"
        )


def content_batch_id(prefix: str, data: bytes) -> str:
    """A batch id derived from content: the same bytes always give the same id."""
    return f"{prefix}-{hashlib.sha256(data).hexdigest()[:32]}"
