"""Impressions: queued as records, written to the lake as impression events without Events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recloop.config import Settings
from recloop.events import Event
from recloop.ingest import Ingestor
from recloop.ingest.validate import events_table
from recloop.lake import Lake, LocalStore
from recloop.serving.errors import SinkFullError
from recloop.serving.sinks import (
    Impression,
    LakeEventSink,
    impressions_table,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def shown(n: int, k: int = 3, signed_in: bool = True, at: datetime = NOW) -> Impression:
    return Impression(
        rec_id=f"{n:032x}",
        actor_id=f"u{n}" if signed_in else f"v{n}",
        signed_in=signed_in,
        item_ids=[f"i{n + j}" for j in range(k)],
        model_version="v7",
        timestamp=at,
    )


def test_the_impression_table_is_the_table_of_the_impression_events() -> None:
    records = [shown(1), shown(2, k=1, signed_in=False), shown(3, k=10)]
    table = impressions_table(records)
    assert table.equals(events_table([r.event() for r in records]))
    row = table.slice(1, 1).to_pylist()[0]
    assert row["event_id"] == f"imp-{2:032x}" and row["event_type"] == "impression"
    assert row["user_id"] is None and row["visitor_id"] == "v2"
    assert row["item_ids"] == ["i2"] and row["positions"] == [0]
    assert table.slice(2, 1).to_pylist()[0]["positions"] == list(range(10))


def test_the_impression_event_validates_as_an_event() -> None:
    event = shown(4, signed_in=False).event()
    assert Event.model_validate(event.model_dump()) == event


def taste(event_id: str, kind: str, at: datetime, **extra: Any) -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "event_type": kind,
            "timestamp": at,
            "user_id": "u1",
            "item_id": "i1",
            **extra,
        }
    )


def ingestor_at(lake: Lake, now: datetime) -> Ingestor:
    return Ingestor(lake, Settings(), clock=lambda: now)


def test_ingest_impressions_accounts_for_every_row(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    records = [shown(1), shown(2), shown(1), shown(3, at=NOW + timedelta(days=1))]
    report = ingestor_at(lake, NOW).ingest_impressions(impressions_table(records), "api-test")
    assert (report.received, report.written, report.duplicates) == (4, 2, 1)
    assert report.quarantined == {"future_timestamp": 1}
    table, _ = lake.read_events()
    assert sorted(table.column("rec_id").to_pylist()) == [f"{1:032x}", f"{2:032x}"]
    quarantined = lake.read_quarantine().to_pylist()
    assert [q["reason"] for q in quarantined] == ["future_timestamp"]
    assert json.loads(quarantined[0]["payload"])["rec_id"] == f"{3:032x}"  # the row, kept


def test_ingest_impressions_takes_impressions_only(lake_uri: str) -> None:
    view = taste("e1", "view", NOW)
    with pytest.raises(ValueError, match="impression rows only"):
        ingestor_at(Lake.from_uri(lake_uri), NOW).ingest_impressions(
            events_table([view]), "api-test"
        )


def test_the_lake_sink_writes_events_and_impressions_of_one_batch(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    now = datetime.now(UTC)
    sink = LakeEventSink(ingestor_at(lake, now), linger_s=0.01)
    sink.start()
    click = taste("c1", "click", now, rec_id=f"{1:032x}")
    sink.submit_impression(shown(1, at=now))
    sink.submit([click])
    sink.submit_impression(shown(2, at=now, signed_in=False))
    assert sink.flush(30.0)
    sink.close()
    table, _ = lake.read_events()
    kinds = sorted(
        zip(
            table.column("event_type").to_pylist(),
            table.column("event_id").to_pylist(),
            strict=True,
        )
    )
    assert kinds == [
        ("click", "c1"),
        ("impression", f"imp-{1:032x}"),
        ("impression", f"imp-{2:032x}"),
    ]
    assert sink.delivered == 3 and sink.dropped == 0


def test_a_full_queue_refuses_an_impression() -> None:
    sink = LakeEventSink(ingestor=None, max_queue=2)  # not started: nothing drains
    sink.submit_impression(shown(1))
    sink.submit_impression(shown(2))
    with pytest.raises(SinkFullError):
        sink.submit_impression(shown(3))
    assert sink.depth == 2


def test_a_failed_impression_write_is_retried_alone(lake_uri: str) -> None:
    from test_ingest_ingestor import FlakyStore  # tests/unit is on sys.path under pytest

    flaky = FlakyStore(LocalStore(Lake.from_uri(lake_uri).store.root), "-imp-")
    lake = Lake(flaky)
    now = datetime.now(UTC)
    sink = LakeEventSink(ingestor_at(lake, now), linger_s=0.01)
    sink.start()
    sink.submit([taste("c1", "click", now)])
    sink.submit_impression(shown(1, at=now))
    assert sink.flush(30.0)
    sink.close()
    table, _ = lake.read_events(dedupe=False)  # the click was not written a second time
    assert sorted(table.column("event_id").to_pylist()) == ["c1", f"imp-{1:032x}"]
    assert sink.delivered == 2 and sink.dropped == 0
    assert flaky.left == 0  # the impressions' first write did fail
