"""`recloop ingest`: summary table, --json on the last line, stdin, errors as exit code 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from recloop.cli import app
from recloop.lake import Lake

RECENT = datetime.now(UTC) - timedelta(hours=2)
LOG_TIME = RECENT.strftime("%d/%b/%Y:%H:%M:%S +0000")
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15"


def weblog(tmp_path: Path) -> Path:
    lines = [
        json.dumps(
            {
                "event_id": "t1",
                "event_type": "view",
                "timestamp": RECENT.isoformat(),
                "user_id": "u1",
                "item_id": "i1",
            }
        ),
        json.dumps(
            {
                "@timestamp": RECENT.isoformat(),
                "message": f'192.0.2.1 - - [{LOG_TIME}] "GET /items/9 HTTP/1.1" 200 10 "-" "{UA}"',
            }
        ),
        f'192.0.2.2 - - [{LOG_TIME}] "GET /items/8 HTTP/1.1" 200 10 "-" "{UA}"',
        f'192.0.2.3 - - [{LOG_TIME}] "GET /app.js HTTP/1.1" 200 10 "-" "{UA}"',
        f'192.0.2.4 - - [{LOG_TIME}] "GET /items/8 HTTP/1.1" 200 10 "-" "SemrushBot/7"',
        '{"event_id": "broken"',
        json.dumps(
            {
                "event_id": "t1",
                "event_type": "view",
                "timestamp": RECENT.isoformat(),
                "user_id": "u1",
                "item_id": "i1",
            }
        ),
    ]
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    return path


EXPECTED = {
    "received": 7,
    "written": 3,
    "filtered": {"bot": 1, "static_asset": 1},
    "quarantined": {"malformed_json": 1},
    "duplicates": 1,
}


def test_json_summary_is_the_last_stdout_line_with_exactly_the_keys(
    tmp_path: Path, lake_uri: str
) -> None:
    result = CliRunner().invoke(
        app, ["ingest", str(weblog(tmp_path)), "--json", "--lake-uri", lake_uri]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == EXPECTED
    assert Lake.from_uri(lake_uri).read_events()[0].num_rows == 3


def test_stdin_and_the_default_lake_from_settings(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lake_uri = (tmp_path / "env-lake").as_uri()
    monkeypatch.setenv("RECLOOP_LAKE_URI", lake_uri)
    from recloop.config import get_settings

    get_settings.cache_clear()
    text = weblog(tmp_path).read_text()
    result = CliRunner().invoke(app, ["ingest", "-", "--json"], input=text)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["written"] == 3
    assert Lake.from_uri(lake_uri).read_events()[0].num_rows == 3


def test_the_human_summary_lists_reasons(tmp_path: Path, lake_uri: str) -> None:
    result = CliRunner().invoke(app, ["ingest", str(weblog(tmp_path)), "--lake-uri", lake_uri])
    assert result.exit_code == 0, result.output
    for word in ("received", "written", "static_asset", "bot", "malformed_json", "duplicates"):
        assert word in result.output
    assert "1 input units were quarantined" in result.output  # says where to look


def test_a_missing_file_is_a_one_line_error_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.log")])
    assert result.exit_code == 2
    assert "nope.log" in result.output
    assert "Traceback" not in result.output


def test_ingested_events_update_the_feature_store_unless_told_not_to(
    tmp_path: Path,
    lake_uri: str,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from recloop.config import get_settings
    from recloop.serving.features import features_from_uri

    features_uri = "sqlite:///" + str(tmp_path / "features.db")
    monkeypatch.setenv("RECLOOP_FEATURES_URI", features_uri)
    get_settings.cache_clear()
    source = str(weblog(tmp_path))
    skipped = CliRunner().invoke(app, ["ingest", source, "--lake-uri", lake_uri, "--no-features"])
    assert skipped.exit_code == 0, skipped.output
    store = features_from_uri(features_uri, timeout_ms=5_000)
    try:
        assert store.recent_history("u1") == []
        result = CliRunner().invoke(
            app, ["ingest", source, "--lake-uri", (tmp_path / "l2").as_uri()]
        )
        assert result.exit_code == 0, result.output
        assert [h.item_id for h in store.recent_history("u1")] == ["i1"]
    finally:
        store.close()


def test_a_truncated_gzip_ingests_what_it_holds_and_says_where_it_broke(
    tmp_path: Path, lake_uri: str
) -> None:
    import gzip

    lines = [
        json.dumps(
            {
                "event_id": f"t{i}",
                "event_type": "view",
                "timestamp": RECENT.isoformat(),
                "user_id": f"u{i}",
                "item_id": "i1",
            }
        )
        for i in range(3000)
    ]
    packed = gzip.compress("\n".join(lines).encode())
    path = tmp_path / "cut.log.gz"
    path.write_bytes(packed[: len(packed) // 2])
    result = CliRunner().invoke(app, ["ingest", str(path), "--lake-uri", lake_uri, "--no-features"])
    assert result.exit_code == 2
    assert "cut.log.gz: unreadable after line" in result.output
    assert "truncated or corrupt" in result.output and "Traceback" not in result.output
    line = int(result.output.split("unreadable after line ")[1].split(" ")[0])
    assert 0 < line < 3000
    written = Lake.from_uri(lake_uri).read_events()[0].num_rows
    assert line - 1 <= written <= line  # the last line read may be cut mid-way: quarantined


def test_a_gz_that_is_not_gzip_says_no_line_was_read(tmp_path: Path, lake_uri: str) -> None:
    path = tmp_path / "plain.gz"
    path.write_text('{"event_id": "e1"}\n')
    result = CliRunner().invoke(app, ["ingest", str(path), "--lake-uri", lake_uri, "--no-features"])
    assert result.exit_code == 2
    assert "plain.gz: unreadable after line 0" in result.output
    assert "No line was read." in result.output and "Lines 1-0" not in result.output
