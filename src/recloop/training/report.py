"""`recloop evaluate`: a registered model scored on lake clicks, as an HTML report with plots.

By default the window is the one right after the model's training window (clicks it has not
seen); a window that overlaps training data is allowed but flagged, since it flatters the model.
Only organic clicks count (no rec_id), as in the gate's holdout.
The report shows metric@K curves against popularity and a breakdown by user activity.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recloop.errors import RecloopError
from recloop.lake import Lake
from recloop.training import dataset as ds
from recloop.training.bundle import ModelBundle
from recloop.training.evaluation import EvalResult, evaluate, select_users
from recloop.training.pipeline import eval_batch_size

DEFAULT_KS = (1, 5, 10, 20, 50)
CURVE_METRICS = ("recall", "ndcg", "precision", "hit_rate")
SEGMENTS = ((1, 2), (3, 5), (6, 10), (11, 20), (21, None))


class ReportError(RecloopError):
    """A model cannot be evaluated on the requested window."""


@dataclass
class Segment:
    label: str
    users: int
    model: float
    popularity: float


@dataclass
class EvaluationReport:
    """The figures behind the HTML report."""

    version: str
    family: str
    start: datetime
    end: datetime
    train_end: str | None
    overlaps_training: bool
    users: int
    ks: tuple[int, ...]
    model: dict[str, list[float]] = field(default_factory=dict)
    popularity: dict[str, list[float]] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    segment_metric: str = "recall@10"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "family": self.family,
            "window": [self.start.isoformat(), self.end.isoformat()],
            "overlaps_training": self.overlaps_training,
            "users": self.users,
            "ks": list(self.ks),
            "model": self.model,
            "popularity": self.popularity,
            "segments": [vars(s) for s in self.segments],
        }


def evaluate_bundle(
    bundle: ModelBundle,
    lake: Lake,
    start: datetime | None = None,
    end: datetime | None = None,
    days: float = 7.0,
    ks: tuple[int, ...] = DEFAULT_KS,
    max_users: int = 10_000,
    seed: int = 42,
) -> EvaluationReport:
    """Score the bundle (training rows as histories, training items excluded) on the organic
    clicks of [start, end), at every K, with popularity beside and a per-activity breakdown."""
    train_end = _parse(bundle.meta.train_end)
    start = start or train_end
    if start is None:
        raise ReportError("the bundle records no training window: pass a start time")
    end = end or start + timedelta(days=days)
    if bundle.history is None:
        raise ReportError("the bundle has no training histories to score users from")
    # Organic clicks only, as the gate's holdout and the search's validation window count
    # them: a click on a list this model served would score it by its own influence.
    clicks = ds.from_lake(
        lake, start, end, ds.DatasetConfig(event_weights={"click": 1.0}), organic=True
    )
    test = ds.align(clicks, bundle.user_ids, bundle.item_ids)
    users = select_users(test, max_users, seed)
    if len(users) == 0:
        raise ReportError(
            f"no clicks by the model's users on its items in {start.isoformat()} .. "
            f"{end.isoformat()}; choose a window with --since/--until"
        )
    report = EvaluationReport(
        version=bundle.version or "unregistered",
        family=bundle.family,
        start=start,
        end=end,
        train_end=bundle.meta.train_end,
        overlaps_training=train_end is not None and start < train_end,
        users=len(users),
        ks=tuple(ks),
    )
    at_ten: EvalResult | None = None
    for k in ks:
        result = evaluate(
            bundle.model,
            bundle.history,
            test,
            k=k,
            users=users,
            baseline=True,
            batch_size=eval_batch_size(bundle.n_items),
        )
        assert result.baseline is not None
        for name in CURVE_METRICS:
            report.model.setdefault(name, []).append(result.metrics[f"{name}@{k}"])
            report.popularity.setdefault(name, []).append(result.baseline.metrics[f"{name}@{k}"])
        if k == 10 or at_ten is None:
            at_ten = result
    assert at_ten is not None
    report.segment_metric = f"recall@{at_ten.k}"
    report.segments = _segments(at_ten, report.segment_metric)
    return report


def _segments(result: EvalResult, metric: str) -> list[Segment]:
    assert result.baseline is not None
    out = []
    for lo, hi in SEGMENTS:
        mask = (result.n_train >= lo) & (result.n_train <= (hi if hi is not None else np.inf))
        if mask.any():
            label = f"{lo}-{hi} items" if hi is not None else f"{lo}+ items"
            out.append(
                Segment(
                    label,
                    int(mask.sum()),
                    float(result.per_user[metric][mask].mean()),
                    float(result.baseline.per_user[metric][mask].mean()),
                )
            )
    return out


def write_report(report: EvaluationReport, out: Path) -> Path:
    """Write out (an .html file) and its PNG plots beside it; returns the HTML path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves = out.with_name(f"{out.stem}-metric-at-k.png")
    segments = out.with_name(f"{out.stem}-segments.png")
    _plot_curves(report, curves)
    _plot_segments(report, segments)
    out.write_text(_html(report, curves.name, segments.name))
    return out


def _plot_curves(report: EvaluationReport, path: Path) -> None:
    from matplotlib.figure import Figure  # the OO API renders with Agg; no global backend

    fig = Figure(figsize=(10, 6.5))
    axes = fig.subplots(2, 2)
    for ax, name in zip(axes.ravel(), CURVE_METRICS, strict=True):
        ax.plot(
            report.ks, report.model[name], marker="o", label=f"{report.family} v{report.version}"
        )
        ax.plot(report.ks, report.popularity[name], marker="s", linestyle="--", label="popularity")
        ax.set_title(f"{name}@K")
        ax.set_xlabel("K")
        ax.set_xscale("log")
        ax.set_xticks(report.ks, [str(k) for k in report.ks])
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.subplots_adjust(hspace=0.45, wspace=0.25)  # fixed spacing: constrained layout is slow
    fig.savefig(path, dpi=90)


def _plot_segments(report: EvaluationReport, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    x = np.arange(len(report.segments))
    ax.bar(x - 0.2, [s.model for s in report.segments], 0.4, label=report.family)
    ax.bar(x + 0.2, [s.popularity for s in report.segments], 0.4, label="popularity")
    ax.set_xticks(x, [f"{s.label}\n({s.users} users)" for s in report.segments])
    ax.set_ylabel(report.segment_metric)
    ax.set_title(f"{report.segment_metric} by training history length")
    ax.legend()
    fig.subplots_adjust(bottom=0.2)
    fig.savefig(path, dpi=90)


def _html(report: EvaluationReport, curves: str, segments: str) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{k}</td>"
        + "".join(
            f"<td>{report.model[n][i]:.4f}</td><td>{report.popularity[n][i]:.4f}</td>"
            for n in CURVE_METRICS
        )
        + "</tr>"
        for i, k in enumerate(report.ks)
    )
    head = "".join(f"<th>{n} model</th><th>{n} popularity</th>" for n in CURVE_METRICS)
    seg_rows = "".join(
        f"<tr><td>{e(s.label)}</td><td>{s.users}</td><td>{s.model:.4f}</td>"
        f"<td>{s.popularity:.4f}</td></tr>"
        for s in report.segments
    )
    warning = (
        "<p class=warn>This window overlaps the model's training data (it ends "
        f"{e(str(report.train_end))}): the figures flatter the model.</p>"
        if report.overlaps_training
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>recloop evaluation: model {e(report.version)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}
.warn{{color:#a00;font-weight:bold}}</style></head><body>
<h1>Model {e(report.version)} ({e(report.family)})</h1>
<p>Clicks from {e(report.start.isoformat())} to {e(report.end.isoformat())};
{report.users} users with at least one organic click (not on a recommended list) on a known
item; training items excluded;
generated {e(datetime.now(UTC).isoformat(timespec="seconds"))}.</p>
{warning}
<h2>Metrics at K against popularity</h2>
<img src="{e(curves)}" alt="metric at K curves">
<table><tr><th>K</th>{head}</tr>{rows}</table>
<h2>By user activity</h2>
<img src="{e(segments)}" alt="per-segment breakdown">
<table><tr><th>segment</th><th>users</th><th>model</th><th>popularity</th></tr>{seg_rows}</table>
</body></html>
"""


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
