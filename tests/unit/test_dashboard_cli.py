"""`recloop dashboard --out FILE.html`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dashboard import END, T0, scenario
from typer.testing import CliRunner

from recloop.cli import app

runner = CliRunner()


def test_dashboard_command_writes_the_page_for_the_newest_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, metrics, _ = scenario(tmp_path)
    monkeypatch.setenv("RECLOOP_LAKE_URI", lake.uri)
    monkeypatch.setenv("RECLOOP_MONITOR_SERVICE_METRICS_URI", metrics.uri)
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", (tmp_path / "registry").as_uri())
    out = tmp_path / "site" / "dash.html"
    result = runner.invoke(app, ["dashboard", "--out", str(out), "--hours", "6", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # The default range ends at the newest data (the scenario's end), not at the wall clock.
    assert summary["end"] >= (END - (END - T0) / 100).isoformat()
    assert summary["model_versions"] == ["v1", "v2", "v3"] or set(summary["model_versions"]) == {
        "v1", "v2", "v3"}  # fmt: skip
    assert summary["decisions"] == 5 and summary["service_points"] > 50
    html = out.read_text()
    assert html.startswith("<!doctype html>") and "engagement_drop" in html


def test_dashboard_command_rejects_a_bad_range(tmp_path: Path) -> None:
    out = tmp_path / "d.html"
    result = runner.invoke(app, ["dashboard", "--out", str(out), "--start", "2026-03-02T10:00",
                                 "--end", "2026-03-02T09:00", "--no-checks"])  # fmt: skip
    assert result.exit_code == 2 and "empty dashboard range" in result.output
    assert not out.exists()
