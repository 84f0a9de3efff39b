"""The Ingestor: decode, apply the business rules, validate, dedupe, write, account.

Every unit of input ends as exactly one of written, filtered (reason), quarantined (reason and
raw payload, in the lake's quarantine), duplicate, or failed (its write failed transiently and
its source record id is reported so the caller can retry it).
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from recloop.config import Settings, get_settings
from recloop.errors import TransientStoreError
from recloop.events import Event, EventType
from recloop.ingest.accesslog import parse_access_log
from recloop.ingest.decode import Candidate, Kind, Rejected, Skipped, Unit, decode_record
from recloop.ingest.files import line_chunks, open_input
from recloop.ingest.redact import redact
from recloop.ingest.report import IngestReport
from recloop.ingest.rules import Rules
from recloop.ingest.validate import events_table, validate_many
from recloop.lake import QUARANTINE_SCHEMA, Lake

log = logging.getLogger(__name__)

_MAX_REPR = 64 * 1024

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
    table: pa.Table | None = None  # rows already in EVENT_SCHEMA (ingest_impressions)
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
                for unit in _decoded(raw, limit):
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
                try:
                    shaped = event if isinstance(event, Event) else self.rules.tracker_event(event)
                except Exception as exc:  # not an event at all: quarantined, the batch goes on
                    payload = _dumps(event).encode("utf-8", "surrogatepass")
                    batch.rejected.append((i, Rejected("invalid_event", _why(exc), payload)))
                    continue
                if isinstance(shaped, Skipped):
                    batch.filtered[shaped.reason] += 1
                else:
                    self._add_candidate(batch, i, shaped, None)
            with _gc_paused():
                report += self._finish(batch, _fixed_name(name), check_age=False)
        _raise_if_failed(report)
        return report

    def ingest_impressions(self, table: pa.Table, batch_id: str) -> IngestReport:
        """Ingest impression rows the API built in EVENT_SCHEMA (serving.sinks.impressions_table).

        They are valid by construction, so nothing is validated row by row; the time window,
        dedupe and writes are those of ingest_events, and every row is accounted for.
        Impressions say nothing of taste, so none goes to the history sink.
        """
        impression = pa.scalar(EventType.IMPRESSION.value)
        if not pc.all(pc.equal(table.column("event_type"), impression)).as_py():
            raise ValueError("ingest_impressions takes impression rows only")
        name = f"{batch_id}-00000"
        n = table.num_rows
        batch = _Batch(
            source_ids=[f"{name}:{i}" for i in range(n)],
            received=n,
            table=table,
            candidate_src=list(range(n)),
            candidate_text=[None] * n,
        )
        with _gc_paused():
            report = self._finish_table(batch, table, list(range(n)), None, _fixed_name(name))
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
        # a file name need not be UTF-8 (surrogate escapes): the source ids must be
        label = label.encode("utf-8", "replace").decode("utf-8")
        with open_input(path) as stream:
            limit = self.settings.max_record_bytes
            for chunk in line_chunks(stream, label, chunk_size, max_line_bytes=limit):
                part = self.ingest_records(chunk.records, chunk.batch_id, check_age=check_age)
                report += part
                if on_chunk is not None:
                    on_chunk(chunk.bytes_read, part)
        _raise_if_failed(report)
        return report

    # ---- pipeline --------------------------------------------------------------------------

    def _route(self, batch: _Batch, src: int, unit: Candidate | Rejected | Skipped) -> None:
        """Route one unit; whatever a rule raises quarantines that unit, not the batch."""
        try:
            self._route_unit(batch, src, unit)
        except Exception as exc:
            why = _redacted_text(_why(exc))  # logs keep no IP or query string either
            log.warning("unit of record %s unprocessable: %s", batch.source_ids[src], why)
            text = unit.text if isinstance(unit, Candidate) else ""
            rejected = Rejected("unprocessable", _why(exc), text.encode("utf-8", "surrogatepass"))
            batch.rejected.append((src, rejected))

    def _route_unit(self, batch: _Batch, src: int, unit: Candidate | Rejected | Skipped) -> None:
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
                    "unsupported_format",
                    # `null`, `"text"` or `1` are JSON, just not an event: no "not JSON" here
                    "neither a JSON object nor an access-log line",
                    unit.text.encode(),
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
        events, rows = self._validated(batch)
        try:
            table = events_table(events)
        except Exception:
            # One event Arrow cannot hold must not cost the others: find it, quarantine it.
            events, rows = self._storable(batch, events, rows)
            table = events_table(events)
        return self._finish_table(batch, table, rows, events, namer, check_age)

    def _storable(
        self, batch: _Batch, events: list[Event], rows: list[int]
    ) -> tuple[list[Event], list[int]]:
        """The events that convert to EVENT_SCHEMA one by one; the others are rejected."""
        kept: list[Event] = []
        kept_rows: list[int] = []
        for event, row in zip(events, rows, strict=True):
            try:
                events_table([event])
            except Exception as exc:  # ArrowInvalid, OverflowError, a constructed oddity
                self._reject(batch, row, "unwritable_event", _why(exc))
                continue
            kept.append(event)
            kept_rows.append(row)
        return kept, kept_rows

    def _finish_table(
        self,
        batch: _Batch,
        table: pa.Table,
        rows: list[int],
        events: list[Event] | None,
        namer: ObjectNamer,
        check_age: bool = False,
    ) -> IngestReport:
        """Window, dedupe and write a batch's valid rows (`rows`: their candidate indices).

        `events` are the rows as Event objects, for the history sink; None when the rows hold
        no taste events.
        """
        report = IngestReport(received=batch.received, filtered=dict(batch.filtered))
        # From here on the batch is one Arrow table: time window, dedupe and hour partitions
        # are vectorised instead of a Python pass per event.
        table = table.append_column(
            "_src", pa.array([batch.candidate_src[i] for i in rows], pa.int32())
        )
        keep = self._in_window(batch, table, rows, check_age)
        keep, report.duplicates = _first_per_event_id(table, keep)
        if len(keep) < table.num_rows:
            table = table.take(pa.array(keep, pa.int64()))
            if events is not None and self.history_sink is not None:
                events = [events[i] for i in keep]
        failed = self._write_events(batch, table, events, namer, report)
        failed |= self._write_quarantine(batch, namer, report)
        report.failed_ids = [batch.source_ids[i] for i in sorted(failed)]
        return report

    def _validated(self, batch: _Batch) -> tuple[list[Event], list[int]]:
        """Valid events and their candidate indices; invalid candidates join the rejected."""
        dicts = [c for c in batch.candidates if not isinstance(c, Event)]
        checked = iter(_validate_isolated(dicts))
        events: list[Event] = []
        rows: list[int] = []
        for i, candidate in enumerate(batch.candidates):
            result = candidate if isinstance(candidate, Event) else next(checked)
            if isinstance(result, str):
                self._reject(batch, i, "invalid_event", result)
            else:
                events.append(result)
                rows.append(i)
        return events, rows

    def _in_window(
        self, batch: _Batch, table: pa.Table, rows: list[int], check_age: bool
    ) -> list[int]:
        """Row numbers inside the accepted time window; the others are rejected."""
        now = self._clock()
        ts = table.column("timestamp")
        late = pc.greater(
            ts, pa.scalar(now + timedelta(seconds=self.settings.max_clock_skew_seconds), ts.type)
        )
        bad = late
        if check_age:
            oldest = now - timedelta(days=self.settings.max_event_age_days)
            bad = pc.or_(late, pc.less(ts, pa.scalar(oldest, ts.type)))
        if not pc.any(bad).as_py():
            return list(range(table.num_rows))
        out = set(pc.indices_nonzero(bad).to_pylist())
        too_late = late.to_pylist()
        stamps = ts.to_pylist()
        for row in sorted(out):
            reason = "future_timestamp" if too_late[row] else "too_old"
            self._reject(
                batch, rows[row], reason, f"{stamps[row].isoformat()} is outside the window"
            )
        return [row for row in range(table.num_rows) if row not in out]

    @staticmethod
    def _reject(batch: _Batch, i: int, reason: str, detail: str) -> None:
        text = batch.candidate_text[i]
        if text is None:  # an object or table row handed in: keep what it was
            if batch.table is not None:
                row = batch.table.slice(i, 1).to_pylist()[0]
            else:
                candidate = batch.candidates[i]
                row = candidate.to_row() if isinstance(candidate, Event) else candidate
            text = _dumps(row)
        payload = text.encode("utf-8", "surrogatepass")
        detail = detail.encode("utf-8", "replace").decode("utf-8")
        batch.rejected.append((batch.candidate_src[i], Rejected(reason, detail[:500], payload)))

    def _write_events(
        self,
        batch: _Batch,
        table: pa.Table,
        events: list[Event] | None,
        namer: ObjectNamer,
        report: IngestReport,
    ) -> set[int]:
        """Write one object per hour; returns the records whose object failed transiently.

        Each object is named from the records whose events it holds, so a retry that
        resends those records (and only those) rewrites the same name.
        """
        failed: set[int] = set()
        if table.num_rows == 0:
            return failed
        hours = pc.floor_temporal(table.column("timestamp"), unit="hour")
        fresh: list[int] = []
        for hour in sorted(pc.unique(hours).to_pylist()):
            mask = pc.equal(hours, pa.scalar(hour, hours.type))
            part = table.filter(mask)
            srcs = sorted(pc.unique(part.column("_src")).to_pylist())
            name = namer([batch.source_ids[s] for s in srcs])
            try:
                written = self.lake.write_events(part.drop_columns(["_src"]), name)
            except TransientStoreError as exc:
                log.warning("event write for %s hour %s failed: %s", name, hour, exc)
                report.failed += part.num_rows
                failed.update(srcs)
                continue
            for obj in written:
                if obj.created:
                    report.written += obj.rows
                    report.objects.append(obj.key)
                    fresh.extend(pc.indices_nonzero(mask).to_pylist())
                    newest = pc.max(part.column("timestamp")).as_py()
                    if report.newest_event is None or newest > report.newest_event:
                        report.newest_event = newest
                else:  # the object exists: a redelivered batch, nothing new
                    report.duplicates += obj.rows
        if fresh and events is not None and self.history_sink is not None:
            self._append_history([events[i] for i in sorted(fresh)], report)
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
                # a detail may quote its input (an exception's text): redacted as well
                "detail": [_redacted_text(r.detail) for _, r in batch.rejected],
                # never the raw bytes: a bounded prefix without IPs or query strings
                "payload": [redact(r.payload) for _, r in batch.rejected],
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
        except Exception as exc:  # the lake write stands; the sink is best-effort, catches up
            log.warning("history sink failed for %d events: %s", len(events), _why(exc))
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


def _first_per_event_id(table: pa.Table, rows: list[int]) -> tuple[list[int], int]:
    """Of `rows`, those holding the first occurrence of their event_id; and how many did not."""
    ids = table.column("event_id").to_pylist()
    seen: set[str] = set()
    kept: list[int] = []
    for row in rows:
        event_id = ids[row]
        if event_id not in seen:
            seen.add(event_id)
            kept.append(row)
    return kept, len(rows) - len(kept)


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
    """JSON of anything handed in (for a quarantine payload); repr when JSON cannot hold it."""
    import orjson

    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError, ValueError):  # deep nesting, odd keys
        return repr(value)[:_MAX_REPR]


def _redacted_text(text: str) -> str:
    raw = text.encode("utf-8", "replace")
    return redact(raw, len(raw)).decode("utf-8", "replace")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _decoded(raw: Any, limit: int) -> list[Unit]:
    """decode_record, with anything it did not foresee quarantined as the record itself."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        payload = str(raw).encode("utf-8", "replace")
        return [Rejected("invalid_record", f"a record is bytes, got {type(raw).__name__}", payload)]
    try:
        return decode_record(bytes(raw), limit)
    except Exception as exc:
        log.warning("record undecodable: %s", _why(exc))
        return [Rejected("undecodable", _why(exc), bytes(raw))]


def _validate_isolated(items: list[Any]) -> list[Event | str]:
    """validate_many; when a validator raises something other than a validation error (it
    should not), each item is validated on its own so only the culprit is rejected."""
    try:
        return validate_many(items)
    except Exception:
        log.exception("batch validation raised; validating %d items one by one", len(items))
    results: list[Event | str] = []
    for item in items:
        try:
            results.append(Event.model_validate(item))
        except Exception as exc:
            results.append(_why(exc))
    return results


def _raise_if_failed(report: IngestReport) -> None:
    if report.failed:
        raise TransientStoreError(
            f"{report.failed} units were not written (transient store errors); "
            "re-run the same input to complete it"
        )


def content_batch_id(prefix: str, data: bytes) -> str:
    """A batch id derived from content: the same bytes always give the same id."""
    return f"{prefix}-{hashlib.sha256(data).hexdigest()[:32]}"
