"""Compaction of closed hours: same rows before and after, each event once, crash-safe at every
step, one winner among concurrent runs, late and redelivered events kept."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from lake_fixtures import Crash, CrashingStore
from recloop.errors import LakeError
from recloop.events import Event, EventType, events_to_table
from recloop.lake import Lake, ObjectStore, compact, compact_hour, layout

HOUR0 = datetime(2024, 3, 1, 10, tzinfo=UTC)
NOW = HOUR0 + timedelta(hours=5)


def _events(ids: range, hour: datetime, prefix: str = "e") -> pa.Table:
    return events_to_table(
        [
            Event(
                event_id=f"{prefix}{i}",
                event_type=EventType.CLICK if i % 3 else EventType.VIEW,
                timestamp=hour + timedelta(seconds=7 * i % 3600),
                user_id=f"u{i % 7}",
                item_id=f"i{i % 11}",
            )
            for i in ids
        ]
    )


def _fill(lake: Lake, batches: int = 6, per_batch: int = 20) -> None:
    """Three hours of small batches, like Lambda invocations; batch 2 redelivers batch 1's ids."""
    for h in range(3):
        hour = HOUR0 + timedelta(hours=h)
        for b in range(batches):
            first = (b - 1 if b == 2 else b) * per_batch
            ids = range(first, first + per_batch)
            lake.write_events(_events(ids, hour, prefix=f"h{h}e"), f"shard-{h}-{b}")


def _rows(lake: Lake, start: datetime | None = None, end: datetime | None = None) -> list[Any]:
    table, _ = lake.read_events(start, end, dedupe=False)
    return sorted(table.to_pylist(), key=lambda r: (r["timestamp"], r["event_id"]))


@pytest.fixture
def s3_server() -> Iterator[tuple[Any, str]]:
    """A real S3 endpoint: moto's server on 127.0.0.1, a free port, stopped after the test."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="recloop-race")
        yield client, "recloop-race"
    finally:
        server.stop()


@pytest.fixture(params=["file", "s3"])
def lake(request: pytest.FixtureRequest, lake_uri: str) -> Lake:
    if request.param == "file":
        return Lake.from_uri(lake_uri)
    client, bucket = request.getfixturevalue("s3_bucket")
    return Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)


def test_compaction_keeps_every_row_and_reads_one_object_per_hour(lake: Lake) -> None:
    _fill(lake)
    before = _rows(lake)
    assert len(lake.event_keys()) == 18

    results = compact(lake.store, now=NOW)

    assert [r.outcome for r in results] == ["committed"] * 3
    assert all(r.sources == 6 and r.files == 1 and r.rows_out == 100 for r in results)
    assert _rows(lake) == before  # identical rows, the redelivered batch once
    assert len(before) == 300
    keys = lake.event_keys()
    assert len(keys) == 3 and all(k.startswith("compacted/") for k in keys)
    assert [p.generation for p in lake.hours()] == [1, 1, 1]


def test_a_window_inside_a_compacted_hour_reads_only_its_rows(lake: Lake) -> None:
    _fill(lake)
    lo, hi = HOUR0 + timedelta(minutes=10), HOUR0 + timedelta(minutes=20)
    before = _rows(lake, lo, hi)
    compact(lake.store, now=NOW)
    assert _rows(lake, lo, hi) == before and before


def test_open_hours_are_left_to_ingest(lake: Lake) -> None:
    _fill(lake)
    # At 12:20 the 11:00 hour is closed (it ended more than the 15-minute settle ago); the
    # 12:00 hour is still being written.
    results = compact(lake.store, now=HOUR0 + timedelta(hours=2, minutes=20))
    assert [r.hour for r in results] == [HOUR0, HOUR0 + timedelta(hours=1)]
    assert [p.generation for p in lake.hours()] == [1, 1, None]


def test_a_second_run_finds_nothing_to_do(lake: Lake) -> None:
    _fill(lake)
    compact(lake.store, now=NOW)
    # On S3 the raw objects are still listed until lifecycle expires them (covered: clean);
    # a local lake moved them aside (nothing to look at).
    assert all(r.outcome == "clean" for r in compact(lake.store, now=NOW))


def test_late_and_redelivered_events_are_read_once_and_folded_in_next_run(lake: Lake) -> None:
    _fill(lake)
    compact(lake.store, now=NOW)
    # After the compaction: a redelivered batch (same name: not rewritten), the same events
    # under another batch name (a retry that split differently), and genuinely late events.
    lake.write_events(_events(range(0, 20), HOUR0, prefix="h0e"), "shard-0-0")
    lake.write_events(_events(range(10, 30), HOUR0, prefix="h0e"), "retry-of-0")
    lake.write_events(_events(range(0, 5), HOUR0, prefix="late"), "late-batch")
    rows = _rows(lake)
    assert len(rows) == 305
    assert len({r["event_id"] for r in rows}) == 305
    hour0 = lake.hours(HOUR0, HOUR0 + timedelta(hours=1))[0]
    assert hour0.compacted == 1 and len(hour0.keys) == 3  # compacted + the two new names

    results = [r for r in compact(lake.store, now=NOW) if r.outcome != "clean"]
    assert [(r.outcome, r.generation) for r in results] == [("committed", 2)]
    assert results[0].sources == 2 and results[0].rows_out == 105
    assert _rows(lake) == rows
    assert lake.event_keys(HOUR0, HOUR0 + timedelta(hours=1)) == [
        k for k in lake.event_keys() if k.split("/")[2] == "hour=10"
    ]
    assert len(lake.event_keys(HOUR0, HOUR0 + timedelta(hours=1))) == 1


# One hour of 6 raw objects, compacted to one data file: writes are
#   1 data file, 2 sources file, 3 marker (the commit), 4-9 retire the raw objects,
#   10 the _retired record. A second generation adds retiring the first one's data file.
CRASH_POINTS = {
    1: "writing the data file",
    2: "writing the sources file",
    3: "writing the marker",
    4: "retiring the first raw object",
    9: "retiring the last raw object",
    10: "recording the clean-up",
}


@pytest.mark.parametrize("at", sorted(CRASH_POINTS), ids=list(CRASH_POINTS.values()))
def test_a_crash_at_any_step_leaves_the_lake_readable_and_complete(lake: Lake, at: int) -> None:
    _fill(lake)
    before = _rows(lake)
    crashing = CrashingStore(lake.store, at)
    with pytest.raises(Crash):
        compact_hour(crashing, HOUR0)
    assert _rows(lake) == before  # readers see the old state or the new one, never half

    results = compact(lake.store, now=NOW)  # the next scheduled run finishes the job
    assert _rows(lake) == before
    hour0 = next(r for r in results if r.hour == HOUR0)
    assert hour0.outcome == ("committed" if at <= 3 else "retired")
    assert hour0.generation == 1
    assert all(p.generation == 1 and len(p.keys) == 1 for p in lake.hours())
    assert all(r.outcome == "clean" for r in compact(lake.store, now=NOW))


def test_a_crash_while_folding_in_late_events_loses_nothing(lake: Lake) -> None:
    _fill(lake)
    compact(lake.store, now=NOW)
    lake.write_events(_events(range(0, 5), HOUR0, prefix="late"), "late-batch")
    before = _rows(lake)
    for at in (1, 2, 3, 4, 5):
        with pytest.raises(Crash):
            compact_hour(CrashingStore(lake.store, at), HOUR0)
        assert _rows(lake) == before
    compact(lake.store, now=NOW)
    assert _rows(lake) == before
    assert lake.hours(HOUR0, HOUR0 + timedelta(hours=1))[0].generation == 2


class InterleavingStore(CrashingStore):
    """Runs `other` just before this compaction writes its marker: the race, made certain."""

    def __init__(self, inner: ObjectStore, other: Callable[[], object]) -> None:
        super().__init__(inner, at=0)
        self.other: Callable[[], object] | None = other

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if layout.MARKER_KEY.match(key) and self.other is not None:
            other, self.other = self.other, None
            other()
        return self.inner.put_if_absent(key, data)


def test_two_compactions_of_one_hour_cannot_both_win(lake: Lake) -> None:
    _fill(lake)
    before = _rows(lake)
    winner: list[Any] = []
    store = InterleavingStore(lake.store, lambda: winner.append(compact_hour(lake.store, HOUR0)))

    loser = compact_hour(store, HOUR0)

    assert winner[0].outcome == "committed" and winner[0].generation == 1
    assert loser.outcome == "lost"
    markers = [i.key for i in lake.store.list("manifests/") if layout.MARKER_KEY.match(i.key)]
    assert markers == [layout.marker_key(layout.unit(HOUR0), 1)]
    assert _rows(lake) == before
    assert len(lake.event_keys(HOUR0, HOUR0 + timedelta(hours=1))) == 1


def test_concurrent_compactions_on_s3_agree_on_one_winner(s3_server: tuple[Any, str]) -> None:
    """Real threads against a real S3 endpoint (moto's server on 127.0.0.1)."""
    client, bucket = s3_server
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    _fill(lake)
    before = _rows(lake)
    barrier = threading.Barrier(4)

    class AtTheLine(CrashingStore):
        def put_if_absent(self, key: str, data: bytes) -> bool:
            if layout.MARKER_KEY.match(key):
                barrier.wait(timeout=30)  # all four reach the commit together
            return self.inner.put_if_absent(key, data)

    outcomes: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(compact_hour(AtTheLine(lake.store, at=0), HOUR0).outcome)
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["committed", "lost", "lost", "lost"]
    assert _rows(lake) == before
    # The losers' files are retired (tagged for expiry); the winner's are not.
    head = lake.hours(HOUR0, HOUR0 + timedelta(hours=1))[0]
    for info in lake.store.list(layout.compacted_prefix(layout.unit(HOUR0))):
        tags = client.get_object_tagging(Bucket=bucket, Key=f"lake/{info.key}")["TagSet"]
        assert (tags == []) == (info.key in head.keys), info.key


def test_replaced_objects_are_tagged_for_lifecycle_expiry(s3_bucket: tuple[Any, str]) -> None:
    client, bucket = s3_bucket
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    _fill(lake)
    compact(lake.store, now=NOW)

    def tags(key: str) -> list[dict[str, str]]:
        return list(client.get_object_tagging(Bucket=bucket, Key=f"lake/{key}")["TagSet"])

    raw = [i.key for i in lake.store.list("events/")]
    assert raw and all(tags(k) == [{"Key": "recloop-lake", "Value": "retired"}] for k in raw)
    kept = lake.event_keys()
    assert all(tags(k) == [] for k in kept)


def test_an_unreadable_raw_object_stops_the_hour_and_commits_nothing(lake: Lake) -> None:
    _fill(lake, batches=2)
    lake.store.put_if_absent(f"{layout.raw_prefix(HOUR0)}broken.parquet", b"not parquet")
    with pytest.raises(LakeError, match=r"broken\.parquet"):
        compact_hour(lake.store, HOUR0)
    assert lake.hours(HOUR0, HOUR0 + timedelta(hours=1))[0].generation is None


def test_a_reproduction_reads_the_compacted_hour_it_recorded(lake: Lake) -> None:
    from recloop.lake import Snapshot
    from recloop.training.pipeline import ManifestStore

    _fill(lake)
    compact(lake.store, now=NOW)
    snapshot = Snapshot(lake.uri, None, None)
    table = pa.concat_tables(list(lake.iter_events(snapshot=snapshot)))
    lake.write_events(_events(range(0, 5), HOUR0, prefix="later"), "later")  # not in the run
    pinned = Lake(ManifestStore(lake.store, snapshot.to_dict()))
    again = pa.concat_tables(list(pinned.iter_events()))
    assert again.num_rows == table.num_rows == 300


# ---- days rolled up ------------------------------------------------------------------------------

LATER = HOUR0 + timedelta(days=4)  # the 2024-03-01 day ended more than two days before


def test_an_old_day_is_rolled_up_into_one_part_with_the_same_rows(lake: Lake) -> None:
    _fill(lake)
    compact(lake.store, now=NOW)  # hours first, as production does
    before = _rows(lake)
    lo, hi = HOUR0 + timedelta(minutes=50), HOUR0 + timedelta(hours=1, minutes=10)
    inside = _rows(lake, lo, hi)

    results = compact(lake.store, now=LATER)

    assert [(r.unit.day, r.outcome, r.generation) for r in results] == [(True, "committed", 1)]
    assert results[0].sources == 3 and results[0].rows_out == 300
    assert _rows(lake) == before
    assert _rows(lake, lo, hi) == inside and inside
    parts = lake.hours()
    assert len(parts) == 1 and parts[0].unit.day and len(parts[0].keys) == 1
    assert all(r.outcome == "clean" for r in compact(lake.store, now=LATER))


def test_a_day_rolls_up_straight_from_raw_objects(lake: Lake) -> None:
    _fill(lake)
    before = _rows(lake)
    results = compact(lake.store, now=LATER)
    assert [(r.unit.day, r.sources) for r in results] == [(True, 18)]
    assert _rows(lake) == before and len(lake.event_keys()) == 1


def test_late_events_in_a_rolled_up_day_are_read_once_and_folded_in(lake: Lake) -> None:
    _fill(lake)
    compact(lake.store, now=LATER)
    lake.write_events(_events(range(15, 25), HOUR0, prefix="h0e"), "redelivered-elsewhere")
    lake.write_events(_events(range(0, 3), HOUR0 + timedelta(hours=2), prefix="late"), "late")
    rows = _rows(lake)
    assert len(rows) == 303
    # An hour compaction racing the roll-up (hour generation newer than the day covers).
    compact_hour(lake.store, HOUR0)
    assert _rows(lake) == rows

    results = [r for r in compact(lake.store, now=LATER) if r.outcome != "clean"]
    assert [(r.unit.day, r.outcome, r.generation) for r in results] == [(True, "committed", 2)]
    assert _rows(lake) == rows
    assert len(lake.event_keys()) == 1


@pytest.mark.parametrize("at", [1, 2, 3, 4, 6])
def test_a_crash_while_rolling_up_a_day_loses_nothing(lake: Lake, at: int) -> None:
    from recloop.lake import compact_day

    _fill(lake)
    compact(lake.store, now=NOW)
    before = _rows(lake)
    with pytest.raises(Crash):
        compact_day(CrashingStore(lake.store, at), HOUR0)
    assert _rows(lake) == before
    compact(lake.store, now=LATER)
    assert _rows(lake) == before and len(lake.event_keys()) == 1
    assert all(r.outcome == "clean" for r in compact(lake.store, now=LATER))


def test_a_local_lake_hides_retired_objects_from_listings_but_not_from_readers(
    lake_uri: str,
) -> None:
    lake = Lake.from_uri(lake_uri)
    _fill(lake)
    planned = lake.hours()  # a reader that planned before the compaction
    compact(lake.store, now=NOW)
    assert list(lake.store.list("events/")) == []
    assert sum(lake.store.get(k) != b"" for p in planned for k in p.keys) == 18
    assert _rows(lake) and all(p.generation == 1 for p in lake.hours())


def test_the_span_and_newest_event_are_the_same_after_a_roll_up(lake: Lake) -> None:
    _fill(lake)
    lake.write_events(_events(range(3), HOUR0 + timedelta(hours=5), prefix="x"), "x")
    span, newest = lake.hour_span(), lake.newest_event()
    inner = lake.hour_span(HOUR0 + timedelta(minutes=90), None)
    compact(lake.store, now=LATER)
    assert lake.hours()[0].unit.day
    assert lake.hour_span() == span == (HOUR0, HOUR0 + timedelta(hours=6))
    assert lake.hour_span(HOUR0 + timedelta(minutes=90), None) == inner
    assert lake.newest_event() == newest
    assert lake.newest_event(None, HOUR0 + timedelta(hours=3)) == max(
        r["timestamp"] for r in _rows(lake, None, HOUR0 + timedelta(hours=3))
    )
