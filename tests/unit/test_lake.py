"""The lake: partitioned writes, exactly-once objects, windowed scans, manifests, old schemas."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recloop.errors import ConfigError, LakeError
from recloop.events import Event, EventType, events_to_table
from recloop.lake import Lake


def _events(n: int, start: datetime, step: timedelta) -> pa.Table:
    return events_to_table(
        [
            Event(
                event_id=f"e{i}",
                event_type=EventType.CLICK,
                timestamp=start + i * step,
                user_id=f"u{i % 3}",
                item_id=f"i{i % 5}",
            )
            for i in range(n)
        ]
    )


@pytest.fixture(params=["file", "s3"])
def lake(request: pytest.FixtureRequest, lake_uri: str) -> Lake:
    if request.param == "file":
        return Lake.from_uri(lake_uri)
    client, bucket = request.getfixturevalue("s3_bucket")
    return Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)


START = datetime(2024, 3, 1, 22, 30, tzinfo=UTC)


def test_events_are_partitioned_by_day_and_hour(lake: Lake) -> None:
    written = lake.write_events(_events(6, START, timedelta(minutes=20)), "shard-0:1-6")
    assert [w.key for w in written] == [
        "events/dt=2024-03-01/hour=22/shard-0_1-6.parquet",
        "events/dt=2024-03-01/hour=23/shard-0_1-6.parquet",
        "events/dt=2024-03-02/hour=00/shard-0_1-6.parquet",
    ]
    assert sum(w.rows for w in written) == 6


def test_a_redelivered_batch_writes_nothing_twice(lake: Lake) -> None:
    table = _events(6, START, timedelta(minutes=20))
    lake.write_events(table, "batch")
    again = lake.write_events(table, "batch")
    assert not any(w.created for w in again)
    assert lake.read_events(dedupe=False)[0].num_rows == 6


def test_a_window_reads_only_its_rows_and_records_its_objects(lake: Lake) -> None:
    lake.write_events(_events(12, START, timedelta(minutes=20)), "b")
    table, snapshot = lake.read_events(START + timedelta(hours=1), START + timedelta(hours=2))
    times = table.column("timestamp").to_pylist()
    assert times and all(
        START + timedelta(hours=1) <= t < START + timedelta(hours=2) for t in times
    )
    assert {e.key.split("/")[2] for e in snapshot.objects} <= {"hour=23", "hour=00"}
    assert all(len(e.sha256) == 64 for e in snapshot.objects)


def test_projection_returns_only_the_asked_columns(lake: Lake) -> None:
    lake.write_events(_events(4, START, timedelta(minutes=1)), "b")
    table, _ = lake.read_events(columns=["user_id", "item_id"])
    assert table.column_names == ["user_id", "item_id"]
    assert table.num_rows == 4


def test_the_same_event_in_two_batches_is_read_once(lake: Lake) -> None:
    table = _events(4, START, timedelta(minutes=1))
    lake.write_events(table, "first")
    lake.write_events(table, "second-delivery")
    assert lake.read_events()[0].num_rows == 4
    # Within an hour every reader drops repeated ids, whatever `dedupe` says.
    assert lake.read_events(dedupe=False)[0].num_rows == 4


def test_snapshot_digest_changes_when_the_data_changes(lake: Lake) -> None:
    lake.write_events(_events(4, START, timedelta(minutes=1)), "a")
    first = lake.read_events()[1]
    assert lake.read_events()[1].digest == first.digest
    lake.write_events(_events(2, START, timedelta(minutes=1)), "b")
    assert lake.read_events()[1].digest != first.digest


def test_a_partition_of_the_previous_schema_version_still_reads(lake: Lake) -> None:
    v1 = pa.table(
        {
            "event_id": ["old-1"],
            "event_type": ["view"],
            "timestamp": pa.array([START], pa.timestamp("us", tz="UTC")),
            "user_id": ["u9"],
            "item_id": ["i9"],
            "schema_version": pa.array([1], pa.int8()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(v1, sink)
    lake.store.put_if_absent("events/dt=2024-03-01/hour=22/v1.parquet", sink.getvalue())
    lake.write_events(_events(1, START, timedelta(minutes=1)), "v2")
    table, _ = lake.read_events()
    rows = {r["event_id"]: r for r in table.to_pylist()}
    assert rows["old-1"]["schema_version"] == 1
    assert rows["old-1"]["session_id"] is None and rows["old-1"]["item_id"] == "i9"
    assert rows["e0"]["schema_version"] == 2


def test_summary_counts_partitions_rows_and_quarantine(lake: Lake) -> None:
    from recloop.lake import QUARANTINE_SCHEMA

    lake.write_events(_events(6, START, timedelta(minutes=20)), "b")
    lake.write_quarantine(
        pa.Table.from_pylist(
            [
                {
                    "received_at": START,
                    "source_id": "s",
                    "reason": "malformed_json",
                    "detail": "x",
                    "payload": b"{",
                }
            ],
            schema=QUARANTINE_SCHEMA,
        ),
        "b",
    )
    summary = lake.summary()
    assert summary.rows == 6 and len(summary.partitions) == 3
    assert summary.quarantine_by_reason == {"malformed_json": 1}


def test_an_unknown_uri_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported lake URI"):
        Lake.from_uri("ftp://example/lake")


def test_an_object_is_copied_into_a_file_and_a_missing_one_is_a_lake_error(
    lake: Lake, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 9_000  # more than one 1 MiB copy chunk
    assert lake.store.put_if_absent("models/1/item_factors.npy", data)
    target = tmp_path / "copy.npy"
    lake.store.copy_to("models/1/item_factors.npy", target)
    assert target.read_bytes() == data
    with pytest.raises(LakeError):
        lake.store.copy_to("models/1/absent.npy", tmp_path / "absent.npy")


def test_the_newest_event_comes_from_footers_or_rows_and_respects_the_window() -> None:
    from recloop.lake.parquet import event_parquet_bytes, newest_timestamp

    data = event_parquet_bytes(_events(6, START, timedelta(minutes=5)))  # 22:30 .. 22:55
    hour = START.replace(minute=0)
    # The footer's max lies inside the window: no rows read.
    assert newest_timestamp(data, hour, hour + timedelta(hours=1)) == START + timedelta(minutes=25)
    # A window ending before the footer's max: the rows decide.
    cut = START + timedelta(minutes=12)
    assert newest_timestamp(data, hour, cut) == START + timedelta(minutes=10)
    assert newest_timestamp(data, START + timedelta(hours=2), START + timedelta(hours=3)) is None
