"""Record bytes into units: JSON tracker events, Logstash events, raw access-log lines.

A Kinesis record (or a file line) may be gzip-compressed and may hold one JSON object, a JSON
array, newline-delimited JSON, a CloudWatch Logs subscription payload or plain log lines.
Nothing here raises on bad input: what cannot be read becomes a `Rejected` unit with a reason.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from recloop.ingest.kpl import AggregateError, deaggregate, is_aggregate

_GZIP_MAGIC = b"\x1f\x8b"


class Kind(Enum):
    EVENT = "event"  # a tracker event as a JSON object
    LOGSTASH = "logstash"  # a Logstash event: @timestamp, message, maybe grok fields
    LINE = "line"  # a plain text line, expected to be an access-log line


@dataclass(slots=True)
class Candidate:
    """A unit that may become an event; `text` is kept as the quarantine payload."""

    kind: Kind
    data: Any  # dict for EVENT and LOGSTASH, str for LINE
    text: str


@dataclass(slots=True)
class Rejected:
    """A unit that is quarantined: `reason` is a short snake_case code."""

    reason: str
    detail: str
    payload: bytes


@dataclass(slots=True)
class Skipped:
    """A unit that is dropped on purpose (counted as filtered with `reason`)."""

    reason: str


Unit = Candidate | Rejected | Skipped


def _gunzip(raw: bytes, limit: int) -> bytes | None:
    """Decompressed bytes, or None when they exceed `limit` (a gzip bomb stops early)."""
    inflater = zlib.decompressobj(wbits=31)
    data = inflater.decompress(raw, limit + 1)
    if len(data) > limit:
        return None
    if not inflater.eof:
        raise zlib.error("truncated gzip stream")
    return data


def _classify(obj: dict[str, Any], text: str) -> Candidate:
    # Logstash always sets @timestamp; a bare {"message": ...} without an event type is a log
    # shipped by something Logstash-like, and is read the same way.
    if "@timestamp" in obj or ("message" in obj and "event_type" not in obj):
        return Candidate(Kind.LOGSTASH, obj, text)
    return Candidate(Kind.EVENT, obj, text)


def decode_line(line: str) -> Unit:
    """One line of NDJSON or of a log file."""
    if line[0] in "{[":
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Rejected("malformed_json", str(exc)[:200], line.encode())
        if isinstance(obj, dict):
            return _classify(obj, line)
        return Rejected("invalid_event", "a JSON line must hold one object", line.encode())
    return Candidate(Kind.LINE, line, line)


def _from_json(obj: Any, text: str) -> list[Unit]:
    if isinstance(obj, dict):
        if "logEvents" in obj and "messageType" in obj:
            return _from_cloudwatch(obj, text)
        return [_classify(obj, text)]
    if isinstance(obj, list) and obj:
        units: list[Unit] = []
        for item in obj:
            item_text = orjson.dumps(item).decode()
            if isinstance(item, dict):
                units.append(_classify(item, item_text))
            else:
                units.append(Rejected("invalid_event", "not a JSON object", item_text.encode()))
        return units
    # `[]` is a list too: say which case this is, not "not a list"
    why = "an empty JSON list (no events)" if obj == [] else "JSON that is not an object"
    return [Rejected("invalid_event", why, text.encode())]


def _from_cloudwatch(obj: dict[str, Any], text: str) -> list[Unit]:
    """A CloudWatch Logs subscription payload: each log event's message is one line."""
    if obj.get("messageType") == "CONTROL_MESSAGE":
        return [Skipped("control_message")]
    events = obj.get("logEvents")
    if not isinstance(events, list) or not events:
        return [Rejected("invalid_event", "CloudWatch payload without logEvents", text.encode())]
    units: list[Unit] = []
    for event in events:
        message = event.get("message") if isinstance(event, dict) else None
        if not isinstance(message, str) or not message.strip():
            units.append(Rejected("empty", "log event without message", orjson.dumps(event)))
        else:
            units.append(decode_line(message.strip()))
    return units


def decode_record(raw: bytes, max_bytes: int) -> list[Unit]:
    """All units in one record; never raises on malformed input.

    A KPL aggregate (Logstash's kinesis output) is unpacked into its user records first.
    """
    if is_aggregate(raw):
        try:
            parts = deaggregate(raw)
        except AggregateError as exc:
            return [Rejected("malformed_aggregate", str(exc), raw)]
        if not parts:
            return [Rejected("empty", "aggregate without records", raw)]
        return [unit for part in parts for unit in _decode_one(part, max_bytes)]
    return _decode_one(raw, max_bytes)


def _decode_one(raw: bytes, max_bytes: int) -> list[Unit]:
    data = raw
    if raw[:2] == _GZIP_MAGIC:
        try:
            inflated = _gunzip(raw, max_bytes)
        except (zlib.error, OSError, EOFError) as exc:
            return [Rejected("malformed_gzip", str(exc)[:200], raw)]
        if inflated is None:
            return [Rejected("oversized", f"decompresses to more than {max_bytes} bytes", raw)]
        data = inflated
    if len(data) > max_bytes:
        # A file line arrives cut at max_bytes + 1 (ingest/files.py): that length is not its size.
        why = (
            f"{len(data)} bytes > {max_bytes}"
            if len(data) > max_bytes + 1
            else f"over {max_bytes} bytes (not read further)"
        )
        return [Rejected("oversized", why, raw)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Rejected("not_utf8", str(exc)[:200], raw)]
    stripped = text.strip()
    if not stripped:
        return [Rejected("empty", "no content", raw)]
    if "\n" not in stripped:
        if stripped[0] not in "{[":
            return [Candidate(Kind.LINE, stripped, stripped)]
        try:
            return _from_json(orjson.loads(stripped), stripped)
        except orjson.JSONDecodeError as exc:
            return [Rejected("malformed_json", str(exc)[:200], raw)]
    units = [decode_line(line) for line in (s.strip() for s in stripped.splitlines()) if line]
    first = units[0]
    if isinstance(first, Rejected) and first.reason == "malformed_json":
        # NDJSON is the common case; a JSON document spread over lines is the exception
        try:
            return _from_json(orjson.loads(stripped), stripped)
        except orjson.JSONDecodeError:
            pass
    return units
