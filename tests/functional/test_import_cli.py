"""`recloop import ...` end to end: real MovieLens 100K, CSVs, and one-line errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.lake import Lake

runner = CliRunner()


@pytest.mark.shared
@pytest.mark.slow
def test_movielens_100k_lands_in_the_lake(shared_dir: Path, lake_uri: str) -> None:
    folder = shared_dir / "data" / "movielens-100k"
    result = runner.invoke(
        app, ["import", "movielens", str(folder), "--lake-uri", lake_uri, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    ratings = (folder / "u.data").read_text().splitlines()
    liked = sum(1 for line in ratings if int(line.split("\t")[2]) >= 4)
    assert summary["received"] == summary["written"] == len(ratings) + liked
    assert summary["quarantined"] == {} and summary["bad_rows"] == 0
    assert summary["catalog"]["items"]["rows"] == 1682
    assert summary["catalog"]["users"]["rows"] == 943
    lake = Lake.from_uri(lake_uri)
    table, _ = lake.read_events(columns=["timestamp", "event_type", "user_id"])
    assert table.num_rows == len(ratings) + liked
    low, high = pc.min_max(table.column("timestamp")).values()
    assert low.as_py() == datetime(1997, 9, 20, 3, 5, 10, tzinfo=UTC)
    assert high.as_py() == datetime(1998, 4, 22, 23, 10, 38, tzinfo=UTC)
    assert pc.count_distinct(table.column("user_id")).as_py() == 943
    items = lake.read_catalog("items")
    assert items is not None
    toy = items.filter(pc.equal(items["item_id"], "1")).to_pylist()[0]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]


def test_csv_import_reports_bad_rows_and_succeeds(tmp_path: Path, lake_uri: str) -> None:
    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,timestamp\nu1,i1,2024-05-01T10:00:00Z\nu2,i2,soon\n")
    result = runner.invoke(app, ["import", "interactions", str(csv), "--lake-uri", lake_uri])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 bad rows" in text and "line 3: timestamp 'soon'" in text
    assert Lake.from_uri(lake_uri).summary().quarantine_by_reason == {"invalid_event": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["interactions", "{tmp}/absent.csv"], "is not a file"),
        (["interactions", "{tmp}/bad.csv"], "missing column(s) item_id"),
        (["movielens", "{tmp}/nowhere"], "is not a folder"),
        (["movielens", "{tmp}"], "holds neither u.data"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(
    tmp_path: Path, lake_uri: str, args: list[str], message: str
) -> None:
    (tmp_path / "bad.csv").write_text("user_id,timestamp\nu,1\n")
    argv = ["import", *[a.format(tmp=tmp_path) for a in args], "--lake-uri", lake_uri]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert text.startswith("error: ") and message in text
    assert "Traceback" not in text
