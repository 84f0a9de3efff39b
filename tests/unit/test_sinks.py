"""The API's event sinks: long retries with backoff, bounded memory, every drop counted."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recloop.config import Settings
from recloop.events import Event, EventType
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.serving.errors import SinkFullError
from recloop.serving.sinks import LakeEventSink, QueuedSink


def view(n: int, at: datetime | None = None) -> Event:
    return Event(
        event_id=f"e{n}",
        event_type=EventType.VIEW,
        timestamp=at or datetime.now(UTC),
        visitor_id=f"v{n % 7}",
        item_id=f"i{n % 13}",
    )


class DownFor(QueuedSink):
    """A backend that refuses every delivery for `down_s` seconds, then takes everything."""

    def __init__(self, down_s: float, **kwargs: Any) -> None:
        super().__init__(**{"linger_s": 0.01, "backoff_s": 0.02, "max_backoff_s": 0.2, **kwargs})
        self.up_at = time.monotonic() + down_s
        self.received: list[str] = []
        self.attempts = 0

    def _deliver(self, batch: list[Any]) -> list[Any]:
        self.attempts += 1
        if time.monotonic() < self.up_at:
            raise ConnectionError("stream unavailable")
        self.received += [e.event_id for e in batch]
        return []


def test_an_outage_longer_than_the_old_retries_loses_nothing() -> None:
    # The old sink gave up after ~0.35-0.75 s of retries and dropped the batch.
    sink = DownFor(1.5)
    sink.start()
    sink.submit([view(n) for n in range(20)])
    assert sink.flush(10.0)
    sink.close()
    assert sorted(sink.received) == sorted(f"e{n}" for n in range(20))
    assert sink.dropped == 0 and sink.delivered == 20
    assert sink.attempts >= 3


def test_while_the_backend_is_down_memory_is_bounded_by_the_queue() -> None:
    sink = DownFor(60.0, max_queue=50, batch_size=10)
    sink.start()
    sink.submit([view(n) for n in range(10)])
    deadline = time.monotonic() + 30
    while sink.depth and time.monotonic() < deadline:  # the thread takes the batch
        time.sleep(0.01)
    assert sink.depth == 0
    sink.submit([view(n) for n in range(10, 60)])  # the queue fills while it retries
    with pytest.raises(SinkFullError):
        sink.submit([view(61)])
    assert sink.depth == 50
    sink.close(timeout=0.2)


def test_every_dropped_event_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[tuple[str, int]] = []
    sink = DownFor(60.0, retry_budget_s=0.3, on_outcome=lambda o, n: outcomes.append((o, n)))
    sink.start()
    sink.submit([view(n) for n in range(7)])
    with caplog.at_level(logging.WARNING, logger="recloop.serving.sinks"):
        assert sink.flush(10.0)
        sink.close()
    assert sink.dropped == 7 and sink.delivered == 0
    assert ("dropped", 7) in outcomes
    assert any("dropped 7 events" in r.getMessage() for r in caplog.records)
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_closing_during_an_outage_counts_what_is_lost_and_returns() -> None:
    sink = DownFor(60.0, batch_size=5)
    sink.start()
    sink.submit([view(n) for n in range(12)])
    started = time.monotonic()
    sink.close(timeout=0.3)
    assert time.monotonic() - started < 5.0  # 0.3 s + a 1 s grace; not the 5-minute budget
    deadline = time.monotonic() + 10  # the thread counts the rest as it stops (a loaded CI)
    while sink.dropped < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.dropped == 12 and sink.delivered == 0


def test_one_bad_event_does_not_cost_the_lake_sink_its_batch(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    sink = LakeEventSink(Ingestor(lake, Settings()), linger_s=0.01)
    sink.start()
    now = datetime.now(UTC)
    good = [view(n, now) for n in range(4_999)]
    # built without validation, as a sink receives whatever a caller constructed: a position
    # the lake's int32 column cannot hold once failed all 5,000 rows of the batch
    bad = view(9_999, now).model_copy(update={"positions": [2**40]})
    sink.submit([*good[:2_000], bad, *good[2_000:]])
    assert sink.flush(30.0)
    sink.close()
    assert sink.dropped == 0 and sink.delivered == 5_000
    assert lake.read_events()[0].num_rows == 4_999
    assert lake.read_quarantine().column("reason").to_pylist() == ["unwritable_event"]


def test_a_retried_lake_batch_writes_nothing_twice(lake_uri: str) -> None:
    # two hours in one batch; the second hour's write fails once
    from test_ingest_ingestor import FlakyStore  # tests/unit is on sys.path under pytest

    from recloop.lake.store import LocalStore

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    flaky = FlakyStore(LocalStore(Lake.from_uri(lake_uri).store.root), f"hour={hour:%H}/")
    lake = Lake(flaky)
    sink = LakeEventSink(Ingestor(lake, Settings()), linger_s=0.01, backoff_s=0.01)
    sink.start()
    events = [view(n, hour - timedelta(hours=1) if n % 2 else hour) for n in range(10)]
    sink.submit(events)
    assert sink.flush(30.0)
    sink.close()
    assert flaky.left == 0
    ids = lake.read_events(dedupe=False)[0].column("event_id").to_pylist()
    assert sorted(ids) == sorted(e.event_id for e in events)  # each once


def test_the_kinesis_sink_drops_only_the_event_it_can_never_send() -> None:
    import boto3
    from moto import mock_aws

    from recloop.serving.sinks import KinesisEventSink

    # built without validation: a surrogate in an id cannot be encoded as JSON for Kinesis
    bad = view(99).model_copy(update={"item_id": "i\ud800"})
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="events", ShardCount=1)
        sink = KinesisEventSink(client, "events", linger_s=0.01)
        sink.start()
        sink.submit([view(1), bad, view(2)])
        assert sink.flush(30.0)
        sink.close()
        shard = client.describe_stream(StreamName="events")["StreamDescription"]["Shards"][0]
        iterator = client.get_shard_iterator(
            StreamName="events", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = client.get_records(ShardIterator=iterator)["Records"]
    assert [Event.model_validate_json(r["Data"]).event_id for r in records] == ["e1", "e2"]
    assert sink.delivered == 2 and sink.dropped == 1
