"""`recloop import interactions FILE.csv`: a CSV of user_id, item_id, timestamp[, event_type].

Timestamps are ISO 8601 (a missing offset means UTC) or epoch seconds. A row that cannot be
an event is reported by line and still handed to the ingest path, which quarantines it with its
reason and payload: nothing is dropped silently. Event ids derive from the row's content (or
come from an `event_id` column), so importing the same rows again writes nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recloop.config import Settings
from recloop.errors import ImportDataError
from recloop.events import EventType
from recloop.importers._common import BATCH_SIZE, ImportResult, Problems, file_digest
from recloop.ingest import Ingestor, IngestReport
from recloop.lake import Lake

REQUIRED = ("user_id", "item_id", "timestamp")
OPTIONAL = ("event_type", "event_id", "session_id")
_EVENT_TYPES = frozenset(t.value for t in EventType if t is not EventType.IMPRESSION)


def parse_timestamp(text: str) -> datetime | str:
    """An aware UTC datetime, or the reason the text is not a timestamp."""
    text = text.strip()
    if not text:
        return "timestamp is empty"
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not -1e10 < seconds < 1e10:
            return f"timestamp {text!r} is out of range (epoch seconds expected, not ms)"
        return datetime.fromtimestamp(seconds, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return f"timestamp {text!r} is neither ISO 8601 nor epoch seconds"
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        return f"timestamp {text!r} is out of range once converted to UTC"


def _not_encoded(path: Path, where: str, encoding: str, exc: UnicodeDecodeError) -> ImportDataError:
    return ImportDataError(
        f"{path.name} {where}: not {encoding} ({exc.reason}); "
        "pass the file's --encoding, e.g. latin-1"
    )


def _header(path: Path, delimiter: str, encoding: str) -> list[str]:
    with path.open(newline="", encoding=encoding) as handle:
        try:
            first = next(csv.reader(handle, delimiter=delimiter), None)
        except UnicodeDecodeError as exc:
            raise _not_encoded(path, "near the top", encoding, exc) from exc
        except csv.Error as exc:
            raise ImportDataError(f"{path.name}: cannot read the header: {exc}") from exc
    if not first:
        raise ImportDataError(f"{path.name} is empty: expected a header {','.join(REQUIRED)}")
    header = [name.strip().lower() for name in first]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        hint = ""
        if len(header) == 1:
            other = next((d for d in (";", "\t", "|") if d in first[0]), None)
            if other is not None:
                hint = f" (the file looks {other!r}-separated; pass --delimiter {other!r})"
        raise ImportDataError(
            f"{path.name}: missing column(s) {', '.join(missing)}; "
            f"the header has {', '.join(header) or 'nothing'}{hint}"
        )
    return header


def _row_event(
    row: list[str], header: list[str], line: int, default_type: str
) -> tuple[dict[str, Any], str | None]:
    """The event dict for a row and None, or a dict that ingest will quarantine and why."""
    values = dict(zip(header, (cell.strip() for cell in row), strict=False))
    user, item = values.get("user_id", ""), values.get("item_id", "")
    etype = (values.get("event_type") or default_type).lower()
    stamp = parse_timestamp(values.get("timestamp", ""))
    problem = None
    if len(row) != len(header):
        problem = f"has {len(row)} fields, the header has {len(header)}"
    elif not user or not item:
        problem = "user_id is empty" if not user else "item_id is empty"
    elif isinstance(stamp, str):
        problem = stamp
    elif etype not in _EVENT_TYPES:
        problem = f"event_type {etype!r} is not one of {', '.join(sorted(_EVENT_TYPES))}"
    if isinstance(stamp, datetime) and problem is None:
        key = f"{user}\x1f{item}\x1f{stamp.isoformat()}\x1f{etype}"
        event_id = values.get("event_id") or "csv-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        event: dict[str, Any] = {
            "event_id": event_id,
            "event_type": etype,
            "timestamp": stamp,
            "user_id": user,
            "item_id": item,
            "source": "csv",
        }
        if values.get("session_id"):
            event["session_id"] = values["session_id"]
        return event, None
    # Shaped so that validation fails on the field at fault; the payload keeps the row.
    bad: dict[str, Any] = {
        "event_id": f"csv-line-{line}",
        "event_type": etype,
        "timestamp": stamp
        if isinstance(stamp, datetime) and len(row) == len(header)
        else f"invalid: {values.get('timestamp', '')!r}",
        "user_id": user,
        "item_id": item,
        "source": "csv",
        "import_error": f"line {line}: {problem}",
        "row": row,
    }
    return bad, problem


def _unreadable(line: int, problem: str) -> tuple[dict[str, Any], str | None]:
    """A row the csv module could not read, shaped to be quarantined (no timestamp)."""
    return {
        "event_id": f"csv-line-{line}",
        "event_type": "view",
        "timestamp": "invalid: unreadable row",
        "source": "csv",
        "import_error": f"line {line}: {problem}",
    }, problem


def _rows(path: Path, delimiter: str, encoding: str) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """Rows by line number; a row the csv module cannot read (a field over its 128 KiB limit,
    a NUL byte) comes as its error, and reading goes on at the next line."""
    with path.open(newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, exc
                continue
            except UnicodeDecodeError as exc:
                raise _not_encoded(path, f"after line {reader.line_num}", encoding, exc) from exc
            if any(cell.strip() for cell in row):
                yield reader.line_num, row


def import_interactions(
    path: str | Path,
    lake: Lake,
    settings: Settings | None = None,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    default_event_type: str = "view",
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[IngestReport], None] | None = None,
) -> ImportResult:
    """Ingest an interactions CSV through the ingest path; returns the accounting."""
    source = Path(path)
    if not source.is_file():
        raise ImportDataError(f"{source} is not a file")
    if default_event_type not in _EVENT_TYPES:
        raise ImportDataError(f"default event type {default_event_type!r} is not an event type")
    try:
        "".encode(encoding)
    except LookupError:
        raise ImportDataError(f"unknown encoding {encoding!r}") from None
    header = _header(source, delimiter, encoding)
    digest = file_digest(source)
    ingestor = Ingestor(lake, settings)
    result = ImportResult(str(source), IngestReport(), problems=Problems())
    batch: list[dict[str, Any]] = []
    number = 0

    def flush() -> None:
        nonlocal batch, number
        if batch:
            part = ingestor.ingest_events(
                batch, f"csv-{digest}-{number:05d}", chunk_size=batch_size
            )
            result.report += part
            if on_batch is not None:
                on_batch(part)
            batch, number = [], number + 1

    for line, row in _rows(source, delimiter, encoding):
        if isinstance(row, csv.Error):
            event, problem = _unreadable(line, f"unreadable CSV: {row}")
        else:
            event, problem = _row_event(row, header, line, default_event_type)
        if problem is not None:
            result.problems.add(f"line {line}", problem)
        batch.append(event)
        if len(batch) >= batch_size:
            flush()
    flush()
    return result
