"""Decoding record bytes: formats, compression, limits; nothing raises on bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recloop.ingest.decode import Candidate, Kind, Rejected, Skipped, decode_record

LIMIT = 4096
EVENT = {
    "event_id": "e1",
    "event_type": "view",
    "timestamp": "2024-01-01T00:00:00Z",
    "user_id": "u",
    "item_id": "i",
}


def kinds(units: list[object]) -> list[str]:
    out = []
    for unit in units:
        if isinstance(unit, Candidate):
            out.append(unit.kind.value)
        elif isinstance(unit, Rejected):
            out.append(f"rejected:{unit.reason}")
        else:
            assert isinstance(unit, Skipped)
            out.append(f"skipped:{unit.reason}")
    return out


def test_one_json_object_is_one_event() -> None:
    units = decode_record(json.dumps(EVENT).encode(), LIMIT)
    assert kinds(units) == ["event"]
    assert isinstance(units[0], Candidate) and units[0].data == EVENT


def test_ndjson_gives_one_unit_per_line_and_keeps_bad_lines_apart() -> None:
    raw = f'{json.dumps(EVENT)}\n\n{{"broken": \n{json.dumps(EVENT)}\r\n'.encode()
    units = decode_record(raw, LIMIT)
    assert kinds(units) == ["event", "rejected:malformed_json", "event"]
    assert isinstance(units[1], Rejected) and units[1].payload == b'{"broken":'


def test_pretty_printed_json_object_is_one_event() -> None:
    assert kinds(decode_record(json.dumps(EVENT, indent=2).encode(), LIMIT)) == ["event"]


def test_a_json_array_gives_one_unit_per_element() -> None:
    raw = json.dumps([EVENT, 3, EVENT]).encode()
    assert kinds(decode_record(raw, LIMIT)) == ["event", "rejected:invalid_event", "event"]


def test_gzip_is_detected_by_its_magic_bytes() -> None:
    raw = gzip.compress(f"{json.dumps(EVENT)}\n{json.dumps(EVENT)}".encode())
    assert kinds(decode_record(raw, LIMIT)) == ["event", "event"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe\x00", "not_utf8"),
        (b'{"event_id": ', "malformed_json"),
        (b"   \n\t ", "empty"),
        (b"x" * (LIMIT + 1), "oversized"),
        (gzip.compress(b"a" * (LIMIT * 100), mtime=0), "oversized"),
        (b"\x1f\x8b\x08\x00garbage", "malformed_gzip"),
        (gzip.compress(b"{}", mtime=0)[:-6], "malformed_gzip"),
        (b'"a string"', "unsupported_format"),
    ],
)
def test_undecodable_records_are_rejected_whole_with_their_bytes(raw: bytes, reason: str) -> None:
    units = decode_record(raw, LIMIT)
    if reason == "unsupported_format":  # a line that is not JSON-object-shaped stays a line
        assert kinds(units) == ["line"]
        return
    assert kinds(units) == [f"rejected:{reason}"]
    assert isinstance(units[0], Rejected) and units[0].payload == raw


@pytest.mark.parametrize(
    ("raw", "detail"),
    [(b"[]", "an empty JSON list (no events)"), (b"[1]", "not a JSON object")],
)
def test_json_that_holds_no_event_says_why(raw: bytes, detail: str) -> None:
    units = decode_record(raw, LIMIT)
    assert kinds(units) == ["rejected:invalid_event"]
    assert isinstance(units[0], Rejected) and units[0].detail == detail


def test_logstash_events_are_recognised() -> None:
    line = {"@timestamp": "2024-01-01T00:00:00Z", "message": "127.0.0.1 - - ..."}
    assert kinds(decode_record(json.dumps(line).encode(), LIMIT)) == ["logstash"]
    assert kinds(decode_record(b'{"message": "hi", "user": "x"}', LIMIT)) == ["logstash"]


def test_plain_lines_are_candidates_for_the_access_log_parser() -> None:
    units = decode_record(b"Hello, this is a test.\nsecond line", LIMIT)
    assert kinds(units) == ["line", "line"]
    assert isinstance(units[0], Candidate) and units[0].kind is Kind.LINE


def test_cloudwatch_logs_subscription_payloads_are_split_into_their_messages() -> None:
    payload = {
        "messageType": "DATA_MESSAGE",
        "logEvents": [
            {"id": "1", "timestamp": 0, "message": "START RequestId: x\n"},
            {"id": "2", "timestamp": 0, "message": json.dumps(EVENT)},
        ],
    }
    assert kinds(decode_record(gzip.compress(json.dumps(payload).encode()), LIMIT)) == [
        "line",
        "event",
    ]
    control = {"messageType": "CONTROL_MESSAGE", "logEvents": []}
    assert kinds(decode_record(json.dumps(control).encode(), LIMIT)) == ["skipped:control_message"]


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_decode_without_raising(raw: bytes) -> None:
    units = decode_record(raw, LIMIT)
    assert units
    assert all(isinstance(u, Candidate | Rejected | Skipped) for u in units)
