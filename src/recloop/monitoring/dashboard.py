"""The on-call dashboard: one self-contained HTML page (inline CSS, JS and SVG, no CDN).

    data = collect_dashboard(lake, metrics_log, decision_log, start, end)
    html = render_dashboard(data)          # what `recloop dashboard` writes and /dashboard serves

Charts over time: requests, p50/p99 latency and error rate (service-metric snapshots), events
ingested (the lake), CTR per model version with retrain/promote/rollback markers (engagement
and the decision log), and the latest detector states and decisions as tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from string import Template
from typing import Any

import numpy as np
import orjson
import pandas as pd

from recloop.config import Settings
from recloop.lake import Lake
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.monitoring.engagement import Engagement
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.monitor import MonitorReport
from recloop.monitoring.service_metrics import ServiceMetricsLog, ServiceSnapshot, service_series

# Bucket widths the page picks from: about 60-150 points across the range.
_FREQS = ["1min", "2min", "5min", "10min", "15min", "30min", "1h", "3h", "6h", "12h", "1D"]
_MARKED = (Action.RETRAIN, Action.PROMOTE, Action.ROLLBACK)


def _ms(value: Any) -> int:
    return int(pd.Timestamp(value).value // 1_000_000)


def _ms_span(freq: str) -> int:
    return int(pd.Timedelta(freq).total_seconds() * 1000)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, 6)


def pick_freq(start: datetime, end: datetime, points: int = 120) -> str:
    """The smallest bucket width that keeps the range under about `points` buckets."""
    span = (end - start).total_seconds()
    for freq in _FREQS:
        if span / pd.Timedelta(freq).total_seconds() <= points:
            return freq
    return _FREQS[-1]


@dataclass
class DashboardData:
    """Everything the page draws, JSON-ready (times in epoch milliseconds)."""

    title: str
    start: int
    end: int
    freq: str
    generated_at: str
    freq_ms: int = 0
    ctr_freq: str = ""
    ctr_freq_ms: int = 0
    service: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # [{name, points}]
    ctr: list[dict[str, Any]] = field(default_factory=list)  # [{name, points}]
    markers: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    alarms_at: int | None = None
    tiles: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def _events_series(lake: Lake, start: datetime, end: datetime, freq: str) -> list[dict[str, Any]]:
    counts: dict[tuple[Any, str], int] = {}
    for table in lake.iter_events(start, end, columns=["timestamp", "event_type"]):
        if not table.num_rows:
            continue
        frame = pd.DataFrame(
            {
                "bucket": table.column("timestamp").to_pandas().dt.floor(freq),
                "event_type": table.column("event_type").to_numpy(zero_copy_only=False),
            }
        )
        grouped = frame.groupby(["bucket", "event_type"]).size()
        for (bucket, kind), n in zip(grouped.index, grouped.to_numpy(), strict=True):
            counts[(bucket, str(kind))] = counts.get((bucket, str(kind)), 0) + int(n)
    if not counts:
        return []
    frame = pd.Series(counts).unstack(fill_value=0).sort_index()
    # Empty buckets are zero events, not gaps: a silent stream should look silent.
    last = (pd.Timestamp(end) - pd.Timedelta(milliseconds=1)).floor(freq)
    full = pd.date_range(frame.index.min(), last, freq=freq)
    frame = frame.reindex(full, fill_value=0)
    order = frame.sum().sort_values(ascending=False).index
    mid = _ms_span(freq) // 2  # a bucket is drawn at its middle
    series = [
        {"name": "all", "points": [[_ms(t) + mid, int(v)] for t, v in frame.sum(axis=1).items()]}
    ]
    series += [
        {"name": str(name), "points": [[_ms(t) + mid, int(v)] for t, v in frame[name].items()]}
        for name in order
    ]
    return series


def ctr_freq(engagement: Engagement, freq: str, target: int = 150) -> str:
    """The smallest bucket, at least `freq`, whose typical (version, bucket) has `target`
    impressions: a CTR over a few dozen impressions is mostly noise."""
    candidates = [f for f in _FREQS if pd.Timedelta(f) >= pd.Timedelta(freq)] or [freq]
    if engagement.frame.empty:
        return candidates[0]
    for candidate in candidates:
        sizes = engagement.ctr(by=["model_version"], freq=candidate)["impressions"]
        if float(sizes.median()) >= target:
            return candidate
    return candidates[-1]


def _ctr_series(engagement: Engagement, freq: str, min_impressions: int) -> list[dict[str, Any]]:
    table = engagement.ctr(by=["model_version"], freq=freq)
    mid = _ms_span(freq) // 2
    series = []
    for version in engagement.versions():
        rows = table[table["model_version"] == version]
        # A bucket with a handful of impressions is noise, not a CTR worth drawing.
        points = [
            [_ms(b) + mid, _num(c) if n >= min_impressions else None, int(n)]
            for b, c, n in zip(rows["bucket"], rows["ctr"], rows["impressions"], strict=True)
        ]
        series.append({"name": version, "points": points})
    return series


def _service_rows(snapshots: list[ServiceSnapshot], freq: str) -> list[dict[str, Any]]:
    series = service_series(snapshots, freq)
    mid = _ms_span(freq) // 2
    return [
        {
            "t": _ms(row["bucket"]) + mid,
            "requests": int(row["requests"]),
            "errors": int(row["errors"]),
            "error_rate": _num(row["error_rate"]),
            "degraded": int(row["degraded"]),
            "p50_ms": _num(row["p50_ms"]),
            "p99_ms": _num(row["p99_ms"]),
        }
        for row in series.to_dict("records")
    ]


def _decision_row(d: Decision) -> dict[str, Any]:
    return {
        "t": _ms(d.at),
        "action": d.action.value,
        "trigger": d.trigger,
        "version": d.model_version,
        "previous_version": d.previous_version,
        "detail": d.detail,
    }


def _marker(d: Decision) -> dict[str, Any]:
    label = {"retrain": "retrain", "promote": "▲ ", "rollback": "↺ "}[d.action.value]
    if d.action is not Action.RETRAIN:
        label += d.model_version or ""
    return {**_decision_row(d), "label": label}


def collect_dashboard(
    lake: Lake | None,
    metrics_log: ServiceMetricsLog | None,
    decision_log: DecisionLog | None,
    start: datetime,
    end: datetime,
    freq: str | None = None,
    report: MonitorReport | None = None,
    title: str = "recloop",
    attribution: timedelta = timedelta(minutes=15),
    min_bucket_impressions: int = 20,
) -> DashboardData:
    """Read every source for [start, end) into the page's data. Absent sources draw empty."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise MonitorError(f"empty dashboard range: {start} .. {end}")
    freq = freq or pick_freq(start, end)
    try:
        pd.Timedelta(freq)
    except ValueError as exc:
        raise MonitorError(f"bad bucket width {freq!r}: use e.g. 5min, 1h, 1D") from exc
    data = DashboardData(title, _ms(start), _ms(end), freq, datetime.now(UTC).isoformat())
    data.freq_ms = data.ctr_freq_ms = _ms_span(freq)
    data.ctr_freq = freq
    data.sources = {
        "lake": lake.uri if lake else "none",
        "decisions": decision_log.uri if decision_log else "none",
        "service": metrics_log.uri if metrics_log else "none",
    }
    snapshots = metrics_log.read(start, end) if metrics_log else []
    data.service = _service_rows(snapshots, freq)
    engagement = None
    if lake is not None:
        data.events = _events_series(lake, start, end, freq)
        engagement = Engagement.from_lake(lake, start, end, attribution)
        data.ctr_freq = ctr_freq(engagement, freq)
        data.ctr_freq_ms = _ms_span(data.ctr_freq)
        data.ctr = _ctr_series(engagement, data.ctr_freq, min_bucket_impressions)
    decisions = decision_log.list(since=start, until=end) if decision_log else []
    data.decisions = [_decision_row(d) for d in decisions]
    data.markers = [_marker(d) for d in decisions if d.action in _MARKED]
    if report is not None:
        data.alarms = [a.to_dict() for a in report.alarms]
        data.alarms_at = _ms(report.now)
    data.tiles = _tiles(snapshots, data, engagement, decisions, report)
    return data


def _tiles(
    snapshots: list[ServiceSnapshot],
    data: DashboardData,
    engagement: Engagement | None,
    decisions: list[Decision],
    report: MonitorReport | None,
) -> list[dict[str, Any]]:
    requests = sum(s.requests for s in snapshots)
    errors = sum(s.errors for s in snapshots)
    hist = [s.latency_counts for s in snapshots if s.latency_counts]
    merged = np.sum(np.array(hist), axis=0) if hist else None
    merged_snap = ServiceSnapshot(
        datetime.now(UTC), datetime.now(UTC), requests,
        latency_counts=tuple(int(c) for c in merged) if merged is not None else (),
    )  # fmt: skip
    events = sum(p[1] for p in data.events[0]["points"]) if data.events else 0
    champion = None
    for d in decisions:
        if d.action in (Action.PROMOTE, Action.ROLLBACK):
            champion = d.model_version
    if champion is None and engagement is not None and not engagement.frame.empty:
        champion = str(engagement.frame["model_version"].iloc[-1])
    ctr = engagement.counts(champion).ctr if engagement is not None and champion else None
    firing = [a.detector for a in report.firing] if report else []
    counts = {a.value: sum(d.action is a for d in decisions) for a in _MARKED}
    return [
        {"label": "Requests", "value": requests, "sub": f"{errors} errors (5xx)"},
        {"label": "p99 latency", "value": merged_snap.quantile_ms(0.99), "format": "ms",
         "sub": f"p50 {_fmt_ms(merged_snap.quantile_ms(0.5))}"},
        {"label": "Error rate", "value": errors / requests if requests else None,
         "format": "pct", "tone": "bad" if requests and errors / requests > 0.01 else ""},
        {"label": "Events ingested", "value": events, "sub": "in the lake, this range"},
        {"label": "Champion", "value": champion, "format": "text",
         "sub": f"CTR {ctr:.2%} over the range" if ctr is not None else "no impressions"},
        {"label": "Alarms firing", "value": len(firing) if report else None,
         "tone": "bad" if firing else "ok" if report else "",
         "sub": ", ".join(firing) if firing else
         f"retrain {counts['retrain']} · promote {counts['promote']} · "
         f"rollback {counts['rollback']}"},
    ]  # fmt: skip


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def render_dashboard(data: DashboardData) -> str:
    """The page as one HTML string (serve it, or write it to a file)."""
    template = resources.files("recloop.monitoring").joinpath("templates/dashboard.html")
    payload = orjson.dumps(asdict(data), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    # Inside <script>, "</" would end the element early: escape it (JSON allows "<\/").
    payload = payload.replace("</", "<\\/")
    title = data.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Template(template.read_text(encoding="utf-8")).substitute(title=title, data=payload)


def latest_data_time(lake: Lake | None, *logs_end: datetime | None) -> datetime | None:
    """The newest timestamp in the lake or the given log ends: where a default range ends."""
    candidates = [t for t in logs_end if t is not None]
    newest = lake.newest_event() if lake is not None else None
    if newest is not None:
        candidates.append(newest)
    return max(candidates) if candidates else None


def dashboard_page(settings: Settings, hours: float = 24.0, end: datetime | None = None) -> str:
    """The page for the `hours` before `end` (default now) from the configured sources."""
    from recloop.monitoring.detectors import MonitorConfig

    hi = (end or datetime.now(UTC)).astimezone(UTC)
    data = collect_dashboard(
        Lake.from_uri(settings.lake_uri),
        ServiceMetricsLog.from_settings(settings),
        DecisionLog.from_settings(settings),
        hi - timedelta(hours=hours),
        hi,
        attribution=MonitorConfig.from_settings(settings).attribution,
    )
    return render_dashboard(data)
