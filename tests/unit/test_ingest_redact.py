"""Quarantine payloads keep no client IP and no query string, and stay a bounded prefix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recloop.events import Context, Event, EventType, strip_query
from recloop.ingest.redact import MAX_PAYLOAD_BYTES, redact
from recloop.ingest.validate import events_table


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (
            b'203.0.113.9 - - [10/Oct/2026:13:55:36 -0700] "GET /items/1?email=a@b.c HTTP/1.1" 200',
            b'<ip> - - [10/Oct/2026:13:55:36 -0700] "GET /items/1?<query> HTTP/1.1" 200',
        ),
        (
            b'{"ip": "2001:db8::7", "at": "2026-12-07T23:55:35Z"}',
            b'{"ip": "<ip>", "at": "2026-12-07T23:55:35Z"}',
        ),
        (b"::1 - - [x]", b"<ip> - - [x]"),
        (b"fe80::1%eth0 GET /", b"<ip> GET /"),
        (b'{"referrer": "https://ex.org/s?q=secret"}', b'{"referrer": "https://ex.org/s?<query>"}'),
        (b"no personal data here: 13:55:36", b"no personal data here: 13:55:36"),
    ],
)
def test_ips_and_query_strings_are_masked(raw: bytes, kept: bytes) -> None:
    assert redact(raw) == kept


def test_a_payload_is_cut_to_a_prefix_without_a_partial_address() -> None:
    # masks are shorter than what they replace, so text read past the prefix can move into
    # it: an address cut by that read must not survive as "198.51.100."
    raw = b"a" * 20 + b" 10.0.0.1" * 480 + b" 198.51.100.23" + b"y" * 10_000
    out = redact(raw)
    assert len(out) <= MAX_PAYLOAD_BYTES
    assert b"198" not in out and b"10.0.0.1" not in out
    assert redact(b"z" * 10_000) == b"z" * MAX_PAYLOAD_BYTES


def test_the_lake_keeps_the_page_not_its_query() -> None:
    assert strip_query("/items/1?utm=x#top") == "/items/1"
    event = Event(
        event_id="e",
        event_type=EventType.VIEW,
        timestamp=datetime.now(UTC),
        user_id="u",
        item_id="i",
        context=Context(page="/search?q=me@example.org", referrer="https://a.b/c#d?e"),
    )
    row = events_table([event]).to_pylist()[0]
    assert (row["page"], row["referrer"]) == ("/search", "https://a.b/c")


def test_posted_events_lose_their_query_before_the_stream() -> None:
    from recloop.serving.schemas import EventBatchIn

    body = {
        "events": [
            {
                "event_id": "x",
                "event_type": "view",
                "timestamp": "2026-01-01T00:00:00Z",
                "user_id": "u",
                "item_id": "i",
                "context": {"page": "/items/i?token=abc", "device": "mobile"},
            }
        ]
    }
    event = EventBatchIn.model_validate(body).events[0]
    assert event.context.page == "/items/i" and event.context.device == "mobile"
