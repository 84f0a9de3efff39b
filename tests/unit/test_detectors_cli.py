"""`recloop monitor check`: alarms with evidence, JSON, EMF, exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from test_detectors import NOW, dropped
from test_engagement_synthetic import T0
from typer.testing import CliRunner

from recloop.cli import app
from recloop.lake import Lake

runner = CliRunner()


@pytest.fixture
def dropped_lake(lake_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    lake = Lake.from_uri(lake_uri)
    rng = np.random.default_rng(11)
    lake.write_events(dropped(rng, 0.11), "b")
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", (tmp_path / "empty-registry").as_uri())
    monkeypatch.setenv("RECLOOP_MONITOR_DRIFT_MIN_EVENTS", "20")
    return lake_uri


def test_check_prints_alarms_with_evidence(dropped_lake: str) -> None:
    result = runner.invoke(app, ["monitor", "check", "--lake-uri", dropped_lake, "--now",
                                 NOW.isoformat()])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "engagement_drop" in result.output and "ALARM" in result.output
    assert "crossed_at" in result.output and "baseline_window" in result.output


def test_check_json_emf_and_fail_on_alarm(dropped_lake: str, tmp_path: Path) -> None:
    emf = tmp_path / "emf.log"
    args = ["monitor", "check", "--lake-uri", dropped_lake, "--now", NOW.isoformat(),
            "--model-version", "v1", "--trained-at", (T0 - timedelta(days=30)).isoformat(),
            "--emf", str(emf), "--json", "--fail-on-alarm"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["model_version"] == "v1"
    assert set(payload["firing"]) == {"engagement_drop", "stale_model"}
    drop = next(a for a in payload["alarms"] if a["detector"] == "engagement_drop")
    assert drop["evidence"]["crossed_at"] is not None
    lines = [json.loads(line) for line in emf.read_text().splitlines()]
    assert any(line.get("CTR") for line in lines)
    assert {line["detector"] for line in lines if "AlarmState" in line} >= {"engagement_drop"}


def test_check_quiet_lake_and_bad_input(lake_uri: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", (tmp_path / "reg").as_uri())
    result = runner.invoke(app, ["monitor", "check", "--lake-uri", lake_uri, "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["firing"] == ["silent_stream"]
    bad = runner.invoke(app, ["monitor", "check", "--lake-uri", lake_uri, "--now", "yesterday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output


def test_ctr_command_groups_by_version_segment_and_time(dropped_lake: str) -> None:
    args = ["monitor", "ctr", "--lake-uri", dropped_lake, "--end", NOW.isoformat(),
            "--hours", "22", "--by", "model_version", "--by", "device", "--freq", "1h",
            "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])["rows"]
    assert {r["device"] for r in rows} == {"mobile", "desktop"}
    by_hour: dict[str, list[int]] = {}
    for r in rows:
        cell = by_hour.setdefault(r["bucket"], [0, 0])
        cell[0] += r["impressions"]
        cell[1] += r["clicked"]
    ctr = [clicked / n for n, clicked in by_hour.values()]
    assert ctr[0] == pytest.approx(0.2, abs=0.05) and ctr[21] == pytest.approx(0.11, abs=0.05)
    table = runner.invoke(app, ["monitor", "ctr", "--lake-uri", dropped_lake, "--end",
                                NOW.isoformat(), "--hours", "2"])  # fmt: skip
    assert table.exit_code == 0 and "slot_ctr" in table.output
    cohort = runner.invoke(app, ["monitor", "ctr", "--lake-uri", dropped_lake, "--by", "cohort"])
    assert cohort.exit_code == 2 and "champion" in cohort.output
