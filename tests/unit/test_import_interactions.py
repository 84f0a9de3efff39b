"""Interactions CSV import: columns, timestamps, bad rows reported and quarantined, re-import."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from recloop.errors import ImportDataError
from recloop.importers import import_interactions, parse_timestamp
from recloop.lake import Lake


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1714561200", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        ("1714561200.5", datetime(2024, 5, 1, 11, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T11:00:00Z", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        ("2024-05-01T13:00:00+02:00", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        ("2024-05-01 11:00:00", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),  # naive: UTC
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ],
)
def test_timestamps_iso_or_epoch_seconds(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("yesterday", "neither ISO 8601"), ("1714560000000", "not ms")],
)
def test_bad_timestamps_say_why(text: str, reason: str) -> None:
    result = parse_timestamp(text)
    assert isinstance(result, str) and reason in result


def test_import_writes_events_with_types_and_real_times(tmp_path: Path, lake_uri: str) -> None:
    path = write(
        tmp_path,
        "user_id,item_id,timestamp,event_type\n"
        "u1,i1,2024-05-01T11:00:00Z,view\n"
        "u1,i1,1714562400,click\n"
        "u2,i9,2024-05-02T08:30:00+00:00,\n",  # empty type: the default
    )
    lake = Lake.from_uri(lake_uri)
    result = import_interactions(path, lake)
    assert result.report.to_dict() == {
        "received": 3,
        "written": 3,
        "filtered": {},
        "quarantined": {},
        "duplicates": 0,
    }
    table, _ = lake.read_events(columns=["user_id", "item_id", "event_type", "timestamp", "source"])
    rows = sorted(table.to_pylist(), key=lambda r: r["timestamp"])
    assert [(r["user_id"], r["item_id"], r["event_type"]) for r in rows] == [
        ("u1", "i1", "view"),
        ("u1", "i1", "click"),
        ("u2", "i9", "view"),
    ]
    assert rows[1]["timestamp"] == datetime(2024, 5, 1, 11, 20, tzinfo=UTC)
    assert {r["source"] for r in rows} == {"csv"}


def test_reimport_writes_nothing_twice(tmp_path: Path, lake_uri: str) -> None:
    path = write(
        tmp_path,
        "user_id,item_id,timestamp\n"
        + "".join(f"u{k % 7},i{k},{1714560000 + 60 * k}\n" for k in range(50)),
    )
    lake = Lake.from_uri(lake_uri)
    assert import_interactions(path, lake, batch_size=20).report.written == 50
    again = import_interactions(path, lake, batch_size=20).report
    assert (again.written, again.duplicates) == (0, 50)
    assert lake.read_events(dedupe=False)[0].num_rows == 50


def test_bad_rows_are_reported_by_line_and_quarantined_with_payload(
    tmp_path: Path, lake_uri: str
) -> None:
    path = write(
        tmp_path,
        "user_id,item_id,timestamp,event_type\n"
        "u1,i1,2024-05-01T11:00:00Z,view\n"
        "u1,i2,not-a-time,view\n"  # line 3
        ",i3,2024-05-01T11:00:00Z,view\n"  # line 4
        "u2,i4,2024-05-01T11:00:00Z,rating\n"  # line 5
        "u2,i5,2024-05-01T11:00:00Z\n"  # line 6: a field short
        "\n"
        "u3,i6,2024-05-01T12:00:00Z,click\n",
    )
    lake = Lake.from_uri(lake_uri)
    result = import_interactions(path, lake)
    report = result.report
    assert result.problems.count == 4
    assert [p.split(":")[0] for p in result.problems.examples] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert "neither ISO 8601" in result.problems.examples[0]
    assert "user_id is empty" in result.problems.examples[1]
    assert "'rating'" in result.problems.examples[2]
    assert report.written == 2 and report.quarantined == {"invalid_event": 4}
    assert report.accounted == report.received == 6
    quarantine = lake.read_quarantine()
    payloads = [orjson.loads(p) for p in quarantine.column("payload").to_pylist()]
    assert sorted(p["import_error"].split(":")[0] for p in payloads) == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    details = quarantine.filter(pc.match_substring(quarantine["detail"], "event_type"))
    assert details.num_rows == 1  # the quarantine reason names the field at fault


def test_missing_columns_are_named(tmp_path: Path, lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    with pytest.raises(ImportDataError, match=r"missing column\(s\) timestamp; the header has"):
        import_interactions(write(tmp_path, "user_id,item_id,time\nu,i,1\n"), lake)
    with pytest.raises(ImportDataError, match="looks ';'-separated"):
        import_interactions(write(tmp_path, "user_id;item_id;timestamp\nu;i;1\n", "b.csv"), lake)
    with pytest.raises(ImportDataError, match="is empty"):
        import_interactions(write(tmp_path, "", "c.csv"), lake)
    with pytest.raises(ImportDataError, match="is not a file"):
        import_interactions(tmp_path / "absent.csv", lake)
    assert lake.summary().rows == 0


def test_other_delimiters_and_event_ids_from_the_file(tmp_path: Path, lake_uri: str) -> None:
    path = write(tmp_path, "event_id;user_id;item_id;timestamp\ne-1;u;i;1714560000\n")
    lake = Lake.from_uri(lake_uri)
    assert import_interactions(path, lake, delimiter=";").report.written == 1
    assert lake.read_events(columns=["event_id"])[0].column("event_id").to_pylist() == ["e-1"]


def test_encodings_are_explicit(tmp_path: Path, lake_uri: str) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id,timestamp\nJos\xe9,i1,1714561200\n".encode("latin-1"))
    lake = Lake.from_uri(lake_uri)
    with pytest.raises(ImportDataError, match=r"not utf-8-sig .*--encoding"):
        import_interactions(path, lake)
    assert import_interactions(path, lake, encoding="latin-1").report.written == 1
    users = lake.read_events(columns=["user_id"])[0].column("user_id").to_pylist()
    assert users == ["José"]
    late = tmp_path / "late.csv"
    rows = "".join(f"u{k},i{k},{1714561200 + k}\n" for k in range(2000))
    late.write_bytes(f"user_id,item_id,timestamp\n{rows}Jos\xe9,i1,1714561200\n".encode("latin-1"))
    with pytest.raises(ImportDataError, match=r"late\.csv after line \d+: not utf-8-sig"):
        import_interactions(late, lake)
    with pytest.raises(ImportDataError, match="unknown encoding"):
        import_interactions(path, lake, encoding="klingon")


def test_a_row_the_csv_reader_cannot_read_is_quarantined_and_the_import_goes_on(
    tmp_path: Path, lake_uri: str
) -> None:
    path = write(
        tmp_path,
        "user_id,item_id,timestamp\n"
        "u1,i1,2024-05-01T11:00:00Z\n"
        f"u1,{'x' * 200_000},2024-05-01T11:00:00Z\n"  # line 3: over the csv field limit
        "u2,i2,2024-05-01T12:00:00Z\n",
    )
    lake = Lake.from_uri(lake_uri)
    result = import_interactions(path, lake)
    assert result.report.written == 2
    assert result.report.quarantined == {"invalid_event": 1}
    assert result.problems.examples == [
        "line 3: unreadable CSV: field larger than field limit (131072)"
    ]
    payload = orjson.loads(lake.read_quarantine().column("payload")[0].as_py())
    assert payload["import_error"].startswith("line 3: unreadable CSV")
