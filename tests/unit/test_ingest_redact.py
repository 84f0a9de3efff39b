"""Quarantine payloads keep no client IP and no query string, and stay a bounded prefix."""

from __future__ import annotations

import pytest

from recloop.events import Context, strip_query
from recloop.ingest.redact import MAX_PAYLOAD_BYTES, redact


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


def test_events_keep_the_page_not_its_query() -> None:
    assert strip_query("/items/1?utm=x#top") == "/items/1"
    context = Context(page="/search?q=me@example.org", referrer="https://a.b/c?d=e")
    assert (context.page, context.referrer) == ("/search", "https://a.b/c")
