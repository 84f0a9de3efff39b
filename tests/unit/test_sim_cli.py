"""`recloop sim weblogs`: files, formats, catalogs, stdout and bad options."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq
from typer.testing import CliRunner

from recloop.cli import app
from recloop.lake import Lake

runner = CliRunner()
SMALL = ["--users", "80", "--items", "60", "--start", "2026-06-01"]


def test_weblogs_writes_events_and_catalog_beside_them(tmp_path: Path) -> None:
    out = tmp_path / "week.jsonl"
    result = runner.invoke(
        app, ["sim", "weblogs", "--days", "2", "--out", str(out), *SMALL, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    lines = out.read_text().splitlines()
    assert summary["lines"] == len(lines) > 100
    assert summary["start"] == "2026-06-01T00:00:00+00:00"
    first = orjson.loads(lines[0])
    assert first["timestamp"].startswith("2026-06-01")
    assert orjson.loads(lines[-1])["timestamp"] < "2026-06-03"
    items = pq.read_table(tmp_path / "week.items.parquet")
    users = pq.read_table(tmp_path / "week.users.parquet")
    assert items.num_rows == summary["items"] >= 60  # plus the items published each day
    assert users.num_rows == 80
    # the same seed and start give the same file
    again = tmp_path / "again.jsonl"
    runner.invoke(app, ["sim", "weblogs", "--days", "2", "--out", str(again), *SMALL])
    assert again.read_bytes() == out.read_bytes()


def test_weblogs_to_stdout_in_access_log_format_with_catalog_in_the_lake(lake_uri: str) -> None:
    result = runner.invoke(
        app,
        [
            "sim",
            "weblogs",
            "--out",
            "-",
            "--format",
            "accesslog",
            "--catalog",
            "lake",
            "--lake-uri",
            lake_uri,
            *SMALL,
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(' HTTP/1.1" ' in line for line in lines)
    lake = Lake.from_uri(lake_uri)
    assert lake.read_catalog("items") is not None
    assert lake.read_catalog("users").num_rows == 80  # type: ignore[union-attr]


def test_bad_options_exit_2_with_one_line(tmp_path: Path) -> None:
    bad_start = runner.invoke(
        app, ["sim", "weblogs", "--out", str(tmp_path / "x"), "--start", "May"]
    )
    assert bad_start.exit_code == 2
    assert "--start 'May' is not an ISO date" in bad_start.output
    json_stdout = runner.invoke(app, ["sim", "weblogs", "--out", "-", "--json"])
    assert json_stdout.exit_code == 2
    assert "--json needs --out FILE" in json_stdout.output
    bad_format = runner.invoke(app, ["sim", "weblogs", "--out", "-", "--format", "csv"])
    assert bad_format.exit_code == 2
