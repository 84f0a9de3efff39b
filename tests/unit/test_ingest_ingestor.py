"""The Ingestor: accounting, dedupe, time window, history sink, events and files, failures."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recloop.config import Settings
from recloop.errors import TransientStoreError
from recloop.events import Event, EventType
from recloop.ingest import Ingestor, IngestReport
from recloop.lake import Lake, LocalStore

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def tracker(i: int, minutes: float = 0, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "event_type": "click",
        "user_id": f"u{i % 3}",
        "item_id": f"i{i % 5}",
        "timestamp": (NOW - timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


def rec(i: int, payload: Any) -> tuple[str, bytes]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"r{i}", data


@pytest.fixture
def lake(lake_uri: str) -> Lake:
    return Lake.from_uri(lake_uri)


@pytest.fixture
def ingestor(lake: Lake) -> Ingestor:
    return Ingestor(lake, Settings(), clock=clock)


class FlakyStore:
    """A LocalStore whose writes fail transiently for keys containing `match`, `times` times."""

    def __init__(self, inner: LocalStore, match: str, times: int = 1) -> None:
        self.inner, self.match, self.left = inner, match, times
        self.uri = inner.uri

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if self.match in key and self.left > 0:
            self.left -= 1
            raise TransientStoreError(f"put {key!r}: SlowDown")
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def list(self, prefix: str) -> Any:
        return self.inner.list(prefix)


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def append_history(self, events: list[Event]) -> None:
        self.calls.append([e.event_id for e in events])
        if self.fail:
            raise RuntimeError("feature store down")


def test_report_summary_has_exactly_the_public_keys_and_reports_add_up() -> None:
    a = IngestReport(received=3, written=1, filtered={"bot": 1}, quarantined={"x": 1})
    b = IngestReport(received=3, written=1, filtered={"bot": 1, "non_2xx": 0}, duplicates=1)
    total = a + b
    assert list(total.to_dict()) == ["received", "written", "filtered", "quarantined", "duplicates"]
    assert total.to_dict() == {
        "received": 6,
        "written": 2,
        "filtered": {"bot": 2, "non_2xx": 0},
        "quarantined": {"x": 1},
        "duplicates": 1,
    }
    assert total.accounted == total.received


def test_duplicates_in_a_batch_are_dropped_and_a_redelivery_writes_nothing(
    ingestor: Ingestor, lake: Lake
) -> None:
    records = [rec(0, tracker(0)), rec(1, tracker(1)), rec(2, tracker(0, minutes=3))]
    first = ingestor.ingest_records(records, "batch-1")
    assert (first.written, first.duplicates) == (2, 1)
    again = ingestor.ingest_records(records, "batch-1")
    assert (again.written, again.duplicates, again.objects) == (0, 3, [])
    table, _ = lake.read_events(dedupe=False)
    assert sorted(table.column("event_id").to_pylist()) == ["e0", "e1"]


def test_events_outside_the_time_window_are_quarantined(lake: Lake) -> None:
    ingestor = Ingestor(
        lake, Settings(max_event_age_days=30, max_clock_skew_seconds=60), clock=clock
    )
    records = [
        rec(0, tracker(0, minutes=60 * 24 * 31)),
        rec(1, tracker(1, minutes=-2)),
        rec(2, tracker(2, minutes=-0.5)),
        rec(3, tracker(3)),
    ]
    report = ingestor.ingest_records(records, "window")
    assert report.quarantined == {"future_timestamp": 1, "too_old": 1}
    assert report.written == 2
    old = ingestor.ingest_records(records[:1], "window-old", check_age=False)
    assert old.written == 1


def test_one_invalid_event_in_a_batch_does_not_cost_the_others(
    ingestor: Ingestor, lake: Lake
) -> None:
    good = [tracker(i) for i in range(50)]
    bad = [
        tracker(100, event_type="teleport"),
        tracker(101, user_id=None),
        tracker(102, timestamp="tomorrow"),
        {**tracker(103), "item_id": "x" * 500},
    ]
    lines = "\n".join(json.dumps(e) for e in [*good[:25], *bad, *good[25:]])
    report = ingestor.ingest_records([("r0", lines.encode())], "mixed")
    assert (report.written, report.quarantined) == (50, {"invalid_event": 4})
    quarantine = lake.read_quarantine().to_pylist()
    assert [json.loads(q["payload"])["event_id"] for q in quarantine] == [
        "e100",
        "e101",
        "e102",
        "e103",
    ]
    assert "event_type" in quarantine[0]["detail"]
    assert all(q["source_id"] == "r0" for q in quarantine)


def test_history_sink_gets_new_events_only_and_its_failure_never_fails_the_write(
    lake: Lake,
) -> None:
    sink = Sink()
    ingestor = Ingestor(lake, Settings(), history_sink=sink, clock=clock)
    records = [rec(i, tracker(i)) for i in range(4)]
    ingestor.ingest_records(records, "h")
    ingestor.ingest_records(records, "h")  # redelivery: nothing new for the sink
    assert sink.calls == [["e0", "e1", "e2", "e3"]]

    broken = Ingestor(lake, Settings(), history_sink=Sink(fail=True), clock=clock)
    report = broken.ingest_records([rec(9, tracker(9))], "h2")
    assert (report.written, report.history_errors) == (1, 1)
    assert "e9" in lake.read_events()[0].column("event_id").to_pylist()


def test_transient_failures_name_their_records_and_a_retry_completes(lake_uri: str) -> None:
    inner = LocalStore(Path(lake_uri.removeprefix("file://")))
    lake = Lake(FlakyStore(inner, "hour=10/"))
    ingestor = Ingestor(lake, Settings(), clock=clock)
    records = [
        rec(0, tracker(0, minutes=30)),
        rec(1, tracker(1, minutes=90)),
        rec(2, tracker(2, minutes=100)),
        rec(3, b"junk"),
    ]
    report = ingestor.ingest_records(records, "flaky")
    assert report.failed_ids == ["r1", "r2"]
    assert (report.written, report.failed, report.accounted) == (1, 2, report.received)
    retry = ingestor.ingest_records(records, "flaky")
    assert (retry.written, retry.failed_ids) == (2, [])
    assert sorted(lake.read_events(dedupe=False)[0].column("event_id").to_pylist()) == [
        "e0",
        "e1",
        "e2",
    ]


def test_ingest_events_takes_models_and_dicts_filters_bots_and_is_rerunnable(
    ingestor: Ingestor, lake: Lake
) -> None:
    old = datetime(1998, 3, 1, tzinfo=UTC)  # MovieLens-era: imports are historical
    events: list[Event | dict[str, Any]] = [
        Event(
            event_id=f"m{i}",
            event_type=EventType.VIEW,
            timestamp=old + timedelta(hours=i),
            user_id="u1",
            item_id=f"i{i}",
        )
        for i in range(5)
    ]
    events.append(tracker(7, user_agent="Baiduspider"))
    events.append(tracker(8))
    report = ingestor.ingest_events(events, "import-ml", chunk_size=3)
    assert report.to_dict() == {
        "received": 7,
        "written": 6,
        "filtered": {"bot": 1},
        "quarantined": {},
        "duplicates": 0,
    }
    rerun = ingestor.ingest_events(events, "import-ml", chunk_size=3)
    assert (rerun.written, rerun.duplicates) == (0, 6)
    assert lake.read_events(dedupe=False)[0].num_rows == 6


def test_ingest_events_raises_when_a_write_failed_and_a_rerun_completes(lake_uri: str) -> None:
    inner = LocalStore(Path(lake_uri.removeprefix("file://")))
    lake = Lake(FlakyStore(inner, "-00001"))
    ingestor = Ingestor(lake, Settings(), clock=clock)
    events = [tracker(i) for i in range(6)]
    with pytest.raises(TransientStoreError, match="re-run"):
        ingestor.ingest_events(events, "imp", chunk_size=2)
    assert lake.read_events()[0].num_rows == 4
    ingestor.ingest_events(events, "imp", chunk_size=2)
    assert lake.read_events(dedupe=False)[0].num_rows == 6


def test_ingest_file_streams_chunks_with_content_ids_and_reruns_write_nothing(
    ingestor: Ingestor, lake: Lake, tmp_path: Path
) -> None:
    lines = [json.dumps(tracker(i, minutes=i)) for i in range(25)]
    lines.insert(10, "this is not a log line")
    lines.insert(3, "")
    path = tmp_path / "weblog.ndjson.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    chunks: list[int] = []
    report = ingestor.ingest_file(path, chunk_size=7, on_chunk=lambda n, part: chunks.append(n))
    assert report.to_dict() == {
        "received": 26,
        "written": 25,
        "filtered": {},
        "quarantined": {"unsupported_format": 1},
        "duplicates": 0,
    }
    assert len(chunks) == 4
    assert lake.read_quarantine().column("source_id").to_pylist() == ["weblog.ndjson.gz:12"]
    rerun = ingestor.ingest_file(path, chunk_size=7)
    assert (rerun.written, rerun.duplicates) == (0, 25)
    assert lake.read_events(dedupe=False)[0].num_rows == 25


def test_an_overlong_line_is_quarantined_without_reading_it_whole(
    lake: Lake, tmp_path: Path
) -> None:
    ingestor = Ingestor(lake, Settings(max_record_bytes=1000), clock=clock)
    path = tmp_path / "long.log"
    path.write_bytes(
        (
            json.dumps(tracker(1)) + "\n" + "y" * 50_000 + "\n" + json.dumps(tracker(2)) + "\n"
        ).encode()
    )
    report = ingestor.ingest_file(path)
    assert (report.written, report.quarantined) == (2, {"oversized": 1})
    quarantined = lake.read_quarantine().to_pylist()[0]
    assert quarantined["source_id"] == "long.log:2"
    assert len(quarantined["payload"]) == 1001  # cut at the limit, not the 50 kB line
    rerun = ingestor.ingest_file(path)
    assert rerun.written == 0


_UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def _record_strategy():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    log_time = NOW.strftime("%d/%b/%Y:%H:%M:%S +0000")
    event = st.builds(
        lambda i, minutes, kind: json.dumps(tracker(i, minutes=minutes, event_type=kind)),
        st.integers(0, 30),
        st.integers(-10, 60 * 24 * 400),
        st.sampled_from(["view", "warp"]),
    )
    access = st.builds(
        lambda ip, path, status, agent: (
            f'10.0.0.{ip} - - [{log_time}] "GET {path} HTTP/1.1" {status} 1 "-" "{agent}"'
        ),
        st.integers(0, 9),
        st.sampled_from(["/items/a", "/items/b", "/x.css", "/"]),
        st.sampled_from([200, 304, 500]),
        st.sampled_from([_UA, "bingbot/2.0", "-"]),
    )
    text = st.lists(event | access | st.text(max_size=40), min_size=1, max_size=4).map("\n".join)
    raw = (
        text.map(str.encode)
        | st.binary(max_size=60)
        | text.map(lambda t: gzip.compress(t.encode()))
    )
    return st.lists(raw, max_size=12)


def test_every_unit_is_accounted_for_exactly_once_whatever_the_mix(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_record_strategy())
    def check(payloads: list[bytes]) -> None:
        lake = Lake.from_uri(tmp_path_factory.mktemp("prop").as_uri())
        ingestor = Ingestor(lake, Settings(max_event_age_days=365), clock=clock)
        report = ingestor.ingest_records([rec(i, p) for i, p in enumerate(payloads)], "prop")
        assert report.accounted == report.received
        assert report.failed == 0 and report.failed_ids == []
        assert lake.read_events(dedupe=False)[0].num_rows == report.written
        quarantine = lake.read_quarantine()
        assert quarantine.num_rows == report.quarantined_total
        for row in quarantine.to_pylist():  # the raw payload is kept (empty only if it was)
            assert row["payload"] is not None and row["reason"]
            assert row["payload"] or row["reason"] == "empty"
        again = ingestor.ingest_records([rec(i, p) for i, p in enumerate(payloads)], "prop")
        assert (again.written, again.duplicates) == (0, report.written + report.duplicates)

    check()


def test_a_batch_whose_every_event_is_rejected_late_writes_no_events(
    ingestor: Ingestor, lake: Lake
) -> None:
    records = [rec(i, tracker(i, minutes=60 * 24 * 400)) for i in range(3)]
    report = ingestor.ingest_records(records, "all-old")
    assert report.to_dict()["quarantined"] == {"too_old": 3}
    assert report.written == 0 and lake.read_events()[0].num_rows == 0


@pytest.mark.parametrize("line", [b"null", b'"text"', b"1e999999", b"hello world"])
def test_a_line_neither_event_nor_access_log_says_so_without_calling_json_not_json(
    ingestor: Ingestor, lake: Lake, line: bytes
) -> None:
    report = ingestor.ingest_records([rec(0, line)], "b1")
    assert report.quarantined == {"unsupported_format": 1}
    [row] = lake.read_quarantine().to_pylist()
    assert row["detail"] == "neither a JSON object nor an access-log line"


def test_an_oversized_file_line_does_not_claim_the_size_it_was_cut_to(
    ingestor: Ingestor, lake: Lake, tmp_path: Path
) -> None:
    # A 3 MiB line is read as its first limit + 1 bytes; "262145 bytes" was not its size.
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"A" * (3 << 20) + b"\n" + json.dumps(tracker(1)).encode() + b"\n")
    report = ingestor.ingest_file(path)
    assert (report.written, report.quarantined) == (1, {"oversized": 1})
    [row] = lake.read_quarantine().to_pylist()
    limit = Settings().max_record_bytes
    assert row["detail"] == f"over {limit} bytes (not read further)"
