"""The compact Lambda: a scheduled run compacts the closed hours of an S3 lake (moto)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recloop.errors import ConfigError
from recloop.events import Event, EventType, events_to_table
from recloop.lake import Lake

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "compact" / "handler.py"
# Loaded under its own name: other Lambdas' tests import a module called "handler" too.
_spec = importlib.util.spec_from_file_location("compact_handler", HANDLER)
assert _spec is not None and _spec.loader is not None
compact_handler = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compact_handler)


class Context:
    """The fields Powertools reads from a Lambda context, and the time left."""

    function_name = "recloop-test-compact"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:compact"
    aws_request_id = "req-1"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _write_hours(lake: Lake, start: datetime, hours: int) -> None:
    for h in range(hours):
        hour = start + timedelta(hours=h)
        for b in range(3):
            events = [
                Event(
                    event_id=f"{h}-{b}-{i}",
                    event_type=EventType.VIEW,
                    timestamp=hour + timedelta(minutes=i),
                    user_id=f"u{i}",
                    item_id=f"i{i}",
                )
                for i in range(5)
            ]
            lake.write_events(events_to_table(events), f"shard-{b}-{h}")


def test_a_scheduled_run_compacts_the_closed_hours_only(
    s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, bucket = s3_bucket
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{bucket}/lake")
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    tick = datetime(2026, 3, 2, 10, 20, tzinfo=UTC)
    _write_hours(lake, tick - timedelta(hours=3, minutes=20), 4)  # 07:00 .. 10:00, 10:00 open
    before = lake.read_events()[0].num_rows
    # An EventBridge scheduled event carries its tick as "time".
    event = {
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": "2026-03-02T10:20:00Z",
    }

    summary = compact_handler.lambda_handler(event, Context(remaining_ms=900_000))

    assert summary["units"] == {"committed": 3}
    assert summary["objects_folded"] == 9 and not summary["stopped_early"]
    assert [p.generation for p in lake.hours()] == [1, 1, 1, None]
    assert lake.read_events()[0].num_rows == before == 60


def test_a_run_short_of_time_starts_nothing_and_leaves_the_lake_whole(
    s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, bucket = s3_bucket
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{bucket}/lake")
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    _write_hours(lake, datetime.now(UTC) - timedelta(hours=5), 2)
    summary = compact_handler.lambda_handler({}, Context(remaining_ms=10_000))
    assert summary["units"] == {} and summary["stopped_early"]
    assert lake.read_events()[0].num_rows == 30


def test_a_local_lake_or_a_bad_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch, lake_uri: str, s3_bucket: tuple[Any, str]
) -> None:
    monkeypatch.setenv("RECLOOP_LAKE_URI", lake_uri)
    with pytest.raises(ConfigError, match="s3://"):
        compact_handler.lambda_handler({}, Context(900_000))
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{s3_bucket[1]}/lake")
    monkeypatch.setenv("RECLOOP_COMPACT_LOOKBACK_HOURS", "a week")
    with pytest.raises(ConfigError, match="compact_lookback_hours"):
        compact_handler.lambda_handler({}, Context(900_000))
