"""The simulator's output formats parse as the ingest path expects, and feed its filters."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from recloop.config import Settings
from recloop.ingest import Ingestor, parse_access_log
from recloop.ingest.rules import Rules
from recloop.lake import Lake
from recloop.sim import Format, World, WorldConfig, iter_lines, write_traffic

START = datetime(2026, 5, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def world_and_traffic():  # type: ignore[no-untyped-def]
    world = World(WorldConfig(seed=11, start=START, n_users=150, n_items=120, n_bots=2))
    return world, world.generate(START, START + timedelta(hours=12))


def test_access_log_lines_parse_and_map_to_items(world_and_traffic) -> None:  # type: ignore[no-untyped-def]
    world, traffic = world_and_traffic
    lines = list(iter_lines(traffic, Format.ACCESSLOG))
    assert len(lines) == len(traffic)
    rules = Rules(Settings())
    reasons: Counter[str] = Counter()
    items = set()
    for line in lines:
        log = parse_access_log(line)
        assert log is not None, line
        assert START <= log.timestamp < START + timedelta(hours=12)
        view = rules.view_from_log(log)
        if isinstance(view, dict):
            items.add(view["item_id"])
        else:
            reasons[view.reason] += 1
    assert items <= set(world.item_ids) and len(items) > 20
    # the filters all have work: assets, errors, bots, the home page
    assert {"static_asset", "non_2xx", "bot", "not_content"} <= set(reasons)


def test_logstash_events_carry_message_and_grok_fields(world_and_traffic) -> None:  # type: ignore[no-untyped-def]
    _world, traffic = world_and_traffic
    records = [orjson.loads(line) for line in iter_lines(traffic, Format.LOGSTASH)]
    lines = list(iter_lines(traffic, Format.ACCESSLOG))
    assert [r["message"] for r in records] == lines
    first = records[0]
    assert {"@timestamp", "clientip", "request", "response", "agent"} <= set(first)
    assert first["agent"].startswith('"') and first["request"].startswith("/")
    rules = Rules(Settings())
    # the grok fields alone describe the same request as the message line
    for record in records[:200]:
        from_grok = rules.log_from_logstash({**record, "message": None}, "")
        from_line = parse_access_log(record["message"])
        assert not hasattr(from_grok, "reason"), from_grok
        assert from_line is not None
        assert (from_grok.path, from_grok.status, from_grok.agent, from_grok.timestamp) == (  # type: ignore[union-attr]
            from_line.path,
            from_line.status,
            from_line.agent,
            from_line.timestamp,
        )


def test_tracker_lines_are_events_and_bots_are_filtered_by_ingest(  # type: ignore[no-untyped-def]
    world_and_traffic, lake_uri: str
) -> None:
    _world, traffic = world_and_traffic
    handle = io.StringIO()
    count = write_traffic(traffic, Format.TRACKER, handle)
    lines = handle.getvalue().splitlines()
    assert count == len(lines) == int(traffic.tracked.sum())
    report = Ingestor(Lake.from_uri(lake_uri)).ingest_records(
        [(f"t:{n}", line.encode()) for n, line in enumerate(lines)], "tracker-test", check_age=False
    )
    bots = sum(1 for line in lines if orjson.loads(line).get("visitor_id", "").startswith("b"))
    assert bots > 0
    assert report.to_dict() == {
        "received": len(lines),
        "written": len(lines) - bots,
        "filtered": {"bot": bots},
        "quarantined": {},
        "duplicates": 0,
    }
