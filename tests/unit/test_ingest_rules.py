"""Access-log parsing and the business rules: items, assets, errors, bots, visitor ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from recloop.config import Settings
from recloop.ingest.accesslog import parse_access_log, parse_clf_time
from recloop.ingest.decode import Rejected, Skipped
from recloop.ingest.rules import Rules, event_id_for_line

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def line(path: str = "/items/42", status: int = 200, agent: str = UA, method: str = "GET") -> str:
    return (
        f'203.0.113.7 - alice [10/Oct/2024:13:55:36 -0700] "{method} {path} HTTP/1.1" {status} '
        f'2326 "https://example.com/start" "{agent}"'
    )


def test_combined_log_lines_parse_into_fields_with_utc_time() -> None:
    log = parse_access_log(line())
    assert log is not None
    assert (log.ip, log.method, log.path, log.status) == ("203.0.113.7", "GET", "/items/42", 200)
    assert log.timestamp == datetime(2024, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert log.referrer == "https://example.com/start"
    assert log.agent == UA


def test_common_log_lines_and_escaped_quotes_parse() -> None:
    common = '10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] "GET /watch/x HTTP/1.0" 200 -'
    log = parse_access_log(common)
    assert log is not None and log.agent == "" and log.referrer is None
    quoted = line(agent='Evil \\"quoted\\" UA')
    assert parse_access_log(quoted) is not None


@pytest.mark.parametrize(
    "text",
    [
        "Hello, this is a test.",
        '1.2.3.4 - - [32/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1',
        '1.2.3.4 - - [10/Foo/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1',
        '1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] "" 200 1',
    ],
)
def test_malformed_lines_are_not_parsed(text: str) -> None:
    assert parse_access_log(text) is None


def test_clf_time_offsets() -> None:
    assert parse_clf_time("01/Feb/2024:00:30:00 +0530") == datetime(2024, 1, 31, 19, 0, tzinfo=UTC)
    assert parse_clf_time("01/Feb/2024:00:30:00") == datetime(2024, 2, 1, 0, 30, tzinfo=UTC)


@pytest.fixture
def rules() -> Rules:
    return Rules(Settings())


def view(rules: Rules, text: str) -> dict[str, object] | Skipped:
    log = parse_access_log(text)
    assert log is not None
    return rules.view_from_log(log)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (line(path="/static/site.CSS?v=3"), "static_asset"),
        (line(path="/favicon.ico"), "static_asset"),
        (line(status=404), "non_2xx"),
        (line(status=302), "non_2xx"),
        (line(agent="Mozilla/5.0 (compatible; Googlebot/2.1)"), "bot"),
        (line(agent="curl/8.4.0"), "bot"),
        (line(agent="-"), "bot"),
        (line(method="POST"), "not_get"),
        (line(path="/search?q=x"), "not_content"),
    ],
)
def test_requests_that_are_not_content_views_are_filtered_with_a_reason(
    rules: Rules, text: str, reason: str
) -> None:
    assert view(rules, text) == Skipped(reason)


def test_a_content_view_becomes_an_event_without_the_raw_ip(rules: Rules) -> None:
    text = line(path="/articles/big-story/read?utm=x")
    event = view(rules, text)
    assert isinstance(event, dict)
    assert event["item_id"] == "big-story"
    assert event["event_type"] == "view"
    assert event["event_id"] == event_id_for_line(text)
    assert "203.0.113.7" not in repr(event)
    assert event["visitor_id"] == rules.visitor_id("203.0.113.7", UA)


def test_url_rules_apply_in_order_and_are_configurable() -> None:
    custom = Rules(Settings(url_rules=(r"^/p/(?P<item>\d+)$", r"^/p/(?P<item>[a-z]+)$")))
    assert custom.item_for("/p/123") == "123"
    assert custom.item_for("/p/abc") == "abc"
    assert custom.item_for("/items/42") is None
    with pytest.raises(ValueError, match="named group"):
        Settings(url_rules=(r"^/p/(\d+)$",))


def test_visitor_ids_are_keyed_stable_and_distinct(rules: Rules) -> None:
    a = rules.visitor_id("198.51.100.1", UA)
    assert a == Rules(Settings()).visitor_id("198.51.100.1", UA)
    assert a != rules.visitor_id("198.51.100.2", UA)
    assert a != rules.visitor_id("198.51.100.1", UA + "x")
    other_key = Rules(Settings(visitor_key=SecretStr("another-secret")))
    assert a != other_key.visitor_id("198.51.100.1", UA)


def test_logstash_events_use_the_message_line_else_grok_fields(rules: Rules) -> None:
    text = line()
    from_message = rules.log_from_logstash({"@timestamp": "x", "message": text}, "{}")
    assert not isinstance(from_message, Rejected) and from_message.raw == text

    grok = {
        "@timestamp": "2024-10-10T20:55:36.000Z",
        "message": "opaque",
        "clientip": "1.2.3.4",
        "verb": "GET",
        "request": "/movies/7?x=1",
        "response": "200",
        "agent": f'"{UA}"',
        "referrer": '"-"',
    }
    log = rules.log_from_logstash(grok, "{}")
    assert not isinstance(log, Rejected)
    assert (log.path, log.status, log.agent, log.referrer) == ("/movies/7?x=1", 200, UA, None)
    assert log.timestamp == datetime(2024, 10, 10, 20, 55, 36, tzinfo=UTC)

    bare = rules.log_from_logstash({"message": "test message", "username": "test"}, "{...}")
    assert isinstance(bare, Rejected) and bare.reason == "unparsable_log"


def test_tracker_events_from_bots_are_filtered_and_ips_become_visitor_ids(rules: Rules) -> None:
    assert rules.tracker_event({"event_id": "e", "user_agent": "AhrefsBot/7.0"}) == Skipped("bot")
    shaped = rules.tracker_event({"event_id": "e", "ip": "192.0.2.5", "user_agent": UA})
    assert isinstance(shaped, dict)
    assert shaped["visitor_id"] == rules.visitor_id("192.0.2.5", UA)
    signed_in = rules.tracker_event({"event_id": "e", "ip": "192.0.2.5", "user_id": "u1"})
    assert isinstance(signed_in, dict) and "visitor_id" not in signed_in


def test_grok_only_events_get_distinct_stable_ids(rules: Rules) -> None:
    base = {
        "@timestamp": "2024-10-10T20:55:36Z",
        "message": "(parsed upstream)",
        "clientip": "1.2.3.4",
        "request": "/items/1",
        "response": 200,
        "agent": UA,
    }
    ids = set()
    for ip in ("1.2.3.4", "1.2.3.5"):
        log = rules.log_from_logstash({**base, "clientip": ip}, "{}")
        assert not isinstance(log, Rejected)
        event = rules.view_from_log(log)
        assert isinstance(event, dict)
        ids.add(event["event_id"])
    assert len(ids) == 2
    again = rules.log_from_logstash(dict(reversed(list(base.items()))), "{}")
    assert not isinstance(again, Rejected)
    first = rules.log_from_logstash(base, "{}")
    assert not isinstance(first, Rejected) and again.raw == first.raw


def test_ecs_grok_fields_from_logstash_8_are_read(rules: Rules) -> None:
    ecs = {
        "@timestamp": "2024-10-10T20:55:36.000Z",
        "timestamp": "10/Oct/2024:13:55:36 -0700",
        "source": {"address": "1.2.3.4"},
        "url": {"original": "/content/abc"},
        "http": {
            "request": {"method": "GET", "referrer": "https://x.test/"},
            "response": {"status_code": 200},
            "version": "1.1",
        },
        "user_agent": {"original": UA},
        "agent": {"type": "filebeat"},
    }
    log = rules.log_from_logstash(ecs, "{}")
    assert not isinstance(log, Rejected)
    assert (log.ip, log.path, log.status, log.referrer, log.agent) == (
        "1.2.3.4",
        "/content/abc",
        200,
        "https://x.test/",
        UA,
    )
    assert log.timestamp == datetime(2024, 10, 10, 20, 55, 36, tzinfo=UTC)
    event = rules.view_from_log(log)
    assert isinstance(event, dict) and event["item_id"] == "abc"


@pytest.mark.parametrize("key", ["recloop-dev-visitor-key", "short-key"])
def test_outside_dev_a_placeholder_or_short_visitor_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="RECLOOP_VISITOR_KEY"):
        Settings(environment="prod", visitor_key=SecretStr(key))
    Settings(environment="dev", visitor_key=SecretStr(key))  # a laptop may use either
    Settings(environment="prod", visitor_key=SecretStr("x" * 16))
