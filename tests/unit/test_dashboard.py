"""The dashboard's data and page, from a synthetic history whose shape is known.

`scenario()` is also used by tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_engagement_synthetic import T0, traffic

from recloop.lake import Lake
from recloop.monitoring.dashboard import (
    DashboardData,
    collect_dashboard,
    latest_data_time,
    pick_freq,
    render_dashboard,
)
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.monitor import ModelInfo, run_checks
from recloop.monitoring.service_metrics import ServiceMetricsLog, SnapshotRecorder

H = timedelta(hours=1)
END = T0 + 6 * H


def scenario(root: Path) -> tuple[Lake, ServiceMetricsLog, DecisionLog]:
    """Six hours: v1 drops at 2h, v2 promoted at 3h recovers, v3 at 4.5h is rolled back at 5h."""
    rng = np.random.default_rng(0)
    lake = Lake.from_uri((root / "lake").as_uri())
    phases = [(0, 2, "v1", 0.20), (2, 3, "v1", 0.12), (3, 4.5, "v2", 0.22), (4.5, 5, "v3", 0.09),
              (5, 6, "v2", 0.22)]  # fmt: skip
    parts = [
        traffic(rng, T0 + a * H, (b - a) * 60, 12, ctr, model_version=v, prefix=f"p{i}")
        for i, (a, b, v, ctr) in enumerate(phases)
    ]
    lake.write_events(pa.concat_tables(parts), "scenario")
    metrics = ServiceMetricsLog((root / "metrics" / "service.jsonl").as_uri())
    recorder = SnapshotRecorder("api:1", now=T0)
    snaps = []
    for minute in range(360):
        for _ in range(int(rng.poisson(40))):
            slow = 4.5 * 60 <= minute < 5 * 60  # v3 is also slower
            recorder.record(rng.lognormal(np.log(0.03 if slow else 0.008), 0.5), 200)
        for _ in range(int(rng.poisson(0.4 if minute % 97 else 8))):
            recorder.record(0.002, 503)
        snaps.append(recorder.flush(T0 + timedelta(minutes=minute + 1), "v1"))
    metrics.append(*snaps)
    decisions = DecisionLog((root / "registry" / "decisions.jsonl").as_uri())
    for at, action, version, prev, trigger in [
        (2.5, Action.ALARM, "v1", None, "engagement_drop"),
        (2.5, Action.RETRAIN, "v1", None, "engagement_drop"),
        (3.0, Action.PROMOTE, "v2", "v1", "gate"),
        (4.5, Action.PROMOTE, "v3", "v2", "gate"),
        (5.0, Action.ROLLBACK, "v2", "v3", "guard_window"),
    ]:
        decisions.append(Decision(action, trigger, version, prev, at=T0 + at * H))
    return lake, metrics, decisions


def test_collect_dashboard_has_every_series_and_marker(tmp_path: Path) -> None:
    lake, metrics, decisions = scenario(tmp_path)
    data = collect_dashboard(lake, metrics, decisions, T0, END, freq="15min")
    assert len(data.service) == 24  # 6 h of 15-minute buckets
    assert sum(r["requests"] for r in data.service) == sum(s.requests for s in metrics.read())
    assert all(r["p99_ms"] >= r["p50_ms"] for r in data.service)
    slow = [r["p50_ms"] for r in data.service if T0 + 4.5 * H <= _dt(r["t"]) < T0 + 5 * H]
    fast = [r["p50_ms"] for r in data.service if _dt(r["t"]) < T0 + 4 * H]
    assert min(slow) > 2 * max(fast)
    names = [s["name"] for s in data.events]
    assert names[0] == "all" and set(names[1:]) == {"impression", "click"}
    assert sum(p[1] for p in data.events[0]["points"]) == lake.summary().rows
    ctr = {s["name"]: s["points"] for s in data.ctr}
    assert set(ctr) == {"v1", "v2", "v3"}
    v1 = [p[1] for p in ctr["v1"] if p[1] is not None]
    assert np.mean(v1[:8]) == pytest.approx(0.20, abs=0.04)
    assert np.mean(v1[8:12]) == pytest.approx(0.12, abs=0.04)
    assert [m["action"] for m in data.markers] == ["retrain", "promote", "promote", "rollback"]
    assert len(data.decisions) == 5  # the alarm is listed, not marked
    tiles = {t["label"]: t for t in data.tiles}
    assert tiles["Champion"]["value"] == "v2"
    assert tiles["Events ingested"]["value"] == lake.summary().rows


def _dt(ms: int):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC)


def test_render_is_self_contained_and_carries_the_data(tmp_path: Path) -> None:
    lake, metrics, decisions = scenario(tmp_path)
    report = run_checks(lake, ModelInfo("v2", trained_at=T0 + 2.8 * H), END)
    data = collect_dashboard(lake, metrics, decisions, T0, END, report=report,
                             title="recloop </script><b>")  # fmt: skip
    html = render_dashboard(data)
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing fetched at run time
    assert "<script src" not in html
    assert "&lt;/script&gt;&lt;b&gt;" in html  # the title is escaped in HTML
    payload = html.split('type="application/json">', 1)[1].split("</script>", 1)[0]
    parsed = json.loads(payload)
    assert parsed["title"] == "recloop </script><b>"
    assert len(parsed["alarms"]) == 4 and parsed["alarms_at"] is not None
    assert parsed["ctr"] == json.loads(json.dumps(data.ctr))


def test_empty_sources_render_and_bad_ranges_are_refused(tmp_path: Path) -> None:
    data = collect_dashboard(None, None, None, T0, END)
    assert isinstance(data, DashboardData) and data.service == [] and data.ctr == []
    assert "recloop" in render_dashboard(data)
    with pytest.raises(MonitorError):
        collect_dashboard(None, None, None, END, T0)
    with pytest.raises(MonitorError):
        collect_dashboard(None, None, None, T0, END, freq="fortnightly")


def test_range_helpers() -> None:
    assert pick_freq(T0, T0 + H) == "1min"
    assert pick_freq(T0, T0 + 6 * H) == "5min"
    assert pick_freq(T0, T0 + timedelta(days=30)) == "6h"
    assert latest_data_time(None) is None


def test_latest_data_time_finds_the_newest_event(tmp_path: Path) -> None:
    lake, _, _ = scenario(tmp_path)
    newest = latest_data_time(lake)
    assert newest is not None and END - timedelta(minutes=2) < newest <= END + timedelta(minutes=1)
