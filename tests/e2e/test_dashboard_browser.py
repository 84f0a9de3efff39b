"""The dashboard in a real headless Chromium: the JavaScript runs and every chart draws.

Skips, saying why, only when no Chromium is installed (CI: apt-get install -y chromium).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_dashboard import END, T0, H, scenario

from recloop.monitoring.dashboard import collect_dashboard, render_dashboard
from recloop.monitoring.monitor import ModelInfo, run_checks

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    missing = f"no headless browser found ({', '.join(BROWSERS)}); apt-get install -y chromium"
    pytest.skip(reason=missing)


def _run(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "--virtual-time-budget=5000",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )


@pytest.mark.slow
def test_every_chart_draws_in_chromium(tmp_path: Path) -> None:
    browser = _browser()
    lake, metrics, decisions = scenario(tmp_path)
    report = run_checks(lake, ModelInfo("v2", trained_at=T0 + 2.8 * H), END)
    page = tmp_path / "dashboard.html"
    page.write_text(render_dashboard(collect_dashboard(lake, metrics, decisions, T0, END,
                                                       report=report)))  # fmt: skip
    result = _run(browser, "--dump-dom", page.as_uri())
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-charts-drawn="5"' in dom, "the script did not finish drawing all five charts"
    drawn = {m[0]: int(m[1]) for m in re.findall(r'id="chart-(\w+)" [^>]*data-drawn="(\d+)"', dom)}
    # requests 1, latency p50+p99, error rate 1, events all+impression+click, CTR v1..v3
    assert drawn == {"requests": 1, "latency": 2, "errors": 1, "events": 3, "ctr": 3}, drawn
    series = re.findall(r'<path class="series"[^>]*d="([^"]+)"', dom)
    assert len(series) == 10
    assert all(len(re.findall(r"[ML]", d)) >= 2 for d in series)  # lines, not empty paths
    markers = re.findall(r'<g class="marker" data-action="(\w+)"', dom)
    assert markers == ["retrain", "promote", "promote", "rollback"]
    assert dom.count('class="pill ') >= 9  # 4 detector states + 5 decisions

    shot = tmp_path / "dashboard.png"
    result = _run(browser, f"--screenshot={shot}", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 20_000, result.stderr[-2000:]
