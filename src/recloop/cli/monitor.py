"""`recloop monitor check|ctr|decay` and `recloop dashboard`: what on-call runs by hand."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors
from recloop.errors import ConfigError, RecloopError

if TYPE_CHECKING:
    from recloop.config import Settings
    from recloop.lake import Lake
    from recloop.monitoring import ModelInfo, MonitorReport
    from recloop.monitoring.decisions import DecisionLog
    from recloop.monitoring.service_metrics import ServiceMetricsLog

monitor_app = typer.Typer(
    help="Engagement, staleness, silence and drift checks.", no_args_is_help=True
)

# Keyed by AlarmState's values (a StrEnum looks them up), so this module loads no detectors.
_STYLE = {"ALARM": "bold red", "OK": "green", "INSUFFICIENT_DATA": "dim"}


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not an ISO 8601 time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _champion(settings: Settings, known_ids: bool) -> ModelInfo | None:
    """The registry's champion as ModelInfo, or None when there is none (or no registry)."""
    from recloop.monitoring.champion import champion_info
    from recloop.registry import open_registry

    try:
        return champion_info(open_registry(settings.registry_uri), known_ids=known_ids)
    except RecloopError as exc:
        console.print(f"[yellow]registry unavailable ({exc}); inferring the model[/yellow]")
        return None


def _model(
    settings: Settings,
    version: str | None,
    trained_at: str | None,
    promoted_at: str | None,
    use_registry: bool,
    known_ids: bool,
) -> ModelInfo | None:
    if version is not None:
        from recloop.monitoring import ModelInfo

        return ModelInfo(
            version, _when(trained_at, "--trained-at"), _when(promoted_at, "--promoted-at")
        )
    return _champion(settings, known_ids) if use_registry else None


def _print_report(report: MonitorReport) -> None:
    table = Table(title=f"monitor at {report.now:%Y-%m-%d %H:%M} UTC, model {report.model_version}")
    for column in ("detector", "state", "summary"):
        table.add_column(column)
    for alarm in report.alarms:
        style = _STYLE[alarm.state]
        table.add_row(alarm.detector, f"[{style}]{alarm.state.value}[/{style}]", alarm.summary)
    console.print(table)
    for alarm in report.firing:
        console.print(f"[bold red]{alarm.detector}[/bold red] evidence:")
        for key, value in alarm.evidence.items():
            if key == "path":  # the CUSUM per block: --json has it
                continue
            console.print(f"  {key}: {value}")


@monitor_app.command("check")
def check(
    model_version: str | None = typer.Option(None, help="Model to check (default: the champion)."),
    trained_at: str | None = typer.Option(None, help="ISO time the model was trained."),
    promoted_at: str | None = typer.Option(None, help="ISO time it went live (its baseline)."),
    registry: bool = typer.Option(True, help="Ask the registry for the champion."),
    known_ids: bool = typer.Option(True, help="Load the champion's ids for the drift check."),
    now: str | None = typer.Option(None, help="Check as of this ISO time (default: now)."),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    emf: Path | None = typer.Option(None, help="Append CloudWatch EMF lines to this file."),
    fail_on_alarm: bool = typer.Option(False, help="Exit 1 when any detector fires."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run every detector and print alarms with their evidence."""
    from recloop.config import get_settings
    from recloop.lake import Lake
    from recloop.monitoring import MonitorConfig, run_checks
    from recloop.monitoring.emf import report_emf

    with user_errors():
        settings = get_settings()
        model = _model(settings, model_version, trained_at, promoted_at, registry, known_ids)
        report = run_checks(
            Lake.from_uri(lake_uri or settings.lake_uri),
            model,
            _when(now, "--now"),
            MonitorConfig.from_settings(settings),
        )
        if emf is not None:
            lines = report_emf(report)
            with emf.open("a", encoding="utf-8") as handle:
                handle.writelines(line + "\n" for line in lines)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if fail_on_alarm and report.firing:
        raise typer.Exit(1)


@monitor_app.command("ctr")
def ctr(
    hours: float = typer.Option(6.0, help="Range length, ending at --end."),
    end: str | None = typer.Option(None, help="ISO end of the range (default: now)."),
    by: list[str] = typer.Option(
        ["model_version"], help="Group by: model_version, device, cohort (repeatable)."
    ),
    freq: str | None = typer.Option(None, help="Also bucket by time, e.g. 1h, 1D."),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """CTR from the lake by model version, segment and time bucket."""
    from recloop.config import get_settings
    from recloop.lake import Lake
    from recloop.monitoring import Engagement, MonitorConfig

    with user_errors():
        settings = get_settings()
        hi = _when(end, "--end") or datetime.now(UTC)
        lo = hi - timedelta(hours=hours)
        config = MonitorConfig.from_settings(settings)
        engagement = Engagement.from_lake(
            Lake.from_uri(lake_uri or settings.lake_uri), lo, hi, config.attribution
        )
        if "cohort" in by:
            model = _champion(settings, known_ids=True)
            if model is None or model.known_users is None:
                raise ConfigError("the cohort segment needs a champion in the registry")
            engagement = engagement.with_cohort(model.known_users)
        table = engagement.ctr(by=by, freq=freq)
    rows = [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]
    if as_json:
        print_json(
            {"start": lo.isoformat(), "end": hi.isoformat(), "unmatched_clicks":
             engagement.unmatched_clicks, "rows": rows}
        )  # fmt: skip
        return
    out = Table(title=f"CTR {lo:%Y-%m-%d %H:%M} .. {hi:%H:%M} UTC")
    for column in table.columns:
        out.add_column(str(column), justify="right" if column not in (*by, "bucket") else "left")
    for row in rows:
        out.add_row(*(_cell(row[c]) for c in table.columns))
    console.print(out)
    console.print(f"clicks matching no impression: {engagement.unmatched_clicks:,}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2%}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@monitor_app.command("decay")
def decay(
    model: str = typer.Option("champion", help="Registry version to score, or 'champion'."),
    days: int = typer.Option(7, min=1, help="How many UTC days, ending at --end."),
    end: str | None = typer.Option(
        None, help="ISO day after the last one scored (default: the day after the newest data)."
    ),
    k: int = typer.Option(10, min=1, help="Cut-off of recall@k and ndcg@k."),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The model's decay curve: recall@k and ndcg@k on each day's organic clicks."""
    from recloop.config import get_settings
    from recloop.lake import Lake
    from recloop.monitoring.decay import decay_curve
    from recloop.registry import registry_from_uri
    from recloop.training.bundle import ModelBundle

    with user_errors():
        settings = get_settings()
        lake = Lake.from_uri(lake_uri or settings.lake_uri)
        registry = registry_from_uri(settings.registry_uri)
        version = model
        if model == "champion":
            champ = registry.champion()
            if champ is None:
                raise ConfigError("the registry has no champion; pass --model VERSION")
            version = champ.version
        hi = _when(end, "--end") or _day_after_newest(lake)
        hi = hi.replace(hour=0, minute=0, second=0, microsecond=0)
        lo = hi - timedelta(days=days)
        with tempfile.TemporaryDirectory(prefix="recloop-decay-") as tmp:
            folder = registry.download(version, Path(tmp) / "bundle")
            curve = decay_curve(lake, ModelBundle.load(folder), lo, hi, k=k)
    rows = [m.to_dict() for m in curve]
    if as_json:
        print_json({"model": version, "k": k, "start": lo.isoformat(), "end": hi.isoformat(),
                    "days": rows})  # fmt: skip
        return
    out = Table(title=f"decay of model {version}, {lo:%Y-%m-%d} .. {hi:%Y-%m-%d} UTC (exclusive)")
    for column in ("day", "users", f"recall@{k}", f"ndcg@{k}"):
        out.add_column(column, justify="left" if column == "day" else "right")
    for m in curve:
        out.add_row(
            m.day.isoformat(),
            f"{m.users:,}",
            "-" if m.recall is None else f"{m.recall:.4f}",
            "-" if m.ndcg is None else f"{m.ndcg:.4f}",
        )
    console.print(out)


def _day_after_newest(lake: Lake) -> datetime:
    """The start of the day after the newest event partition (today's end without events)."""
    span = lake.hour_span()
    if span is None:
        return datetime.now(UTC) + timedelta(days=1)
    newest = span[1] - timedelta(hours=1)
    return newest.replace(hour=0) + timedelta(days=1)


def dashboard(
    out: Path = typer.Option(..., "--out", help="Where to write the HTML page."),
    hours: float = typer.Option(24.0, help="Range length, ending at --end."),
    end: str | None = typer.Option(None, help="ISO end of the range (default: newest data)."),
    start: str | None = typer.Option(None, help="ISO start (overrides --hours)."),
    freq: str | None = typer.Option(None, help="Bucket width, e.g. 5min, 1h (default: auto)."),
    checks: bool = typer.Option(True, help="Run the detectors at the range end for the table."),
    title: str = typer.Option("recloop", help="Page title."),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    metrics_uri: str | None = typer.Option(None, help="Service-metrics JSON-lines URI."),
    decisions_uri: str | None = typer.Option(None, help="Decision-log JSON-lines URI."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Write a self-contained HTML dashboard: traffic, latency, errors, events, CTR, decisions."""
    from recloop.config import get_settings
    from recloop.lake import Lake
    from recloop.monitoring import MonitorConfig, run_checks
    from recloop.monitoring.dashboard import collect_dashboard, render_dashboard
    from recloop.monitoring.decisions import DecisionLog
    from recloop.monitoring.service_metrics import ServiceMetricsLog

    with user_errors():
        settings = get_settings()
        lake = Lake.from_uri(lake_uri or settings.lake_uri)
        metrics = ServiceMetricsLog(metrics_uri or settings.monitor_service_metrics_uri)
        decisions = (
            DecisionLog(decisions_uri) if decisions_uri else DecisionLog.from_settings(settings)
        )
        hi = _when(end, "--end") or _newest(lake, metrics, decisions) or datetime.now(UTC)
        # A range that ends at the newest event should still show that event.
        hi = hi + timedelta(seconds=1) if end is None else hi
        lo = _when(start, "--start") or hi - timedelta(hours=hours)
        config = MonitorConfig.from_settings(settings)
        report = run_checks(lake, _champion(settings, False), hi, config) if checks else None
        data = collect_dashboard(
            lake, metrics, decisions, lo, hi, freq, report, title, config.attribution
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_dashboard(data), encoding="utf-8")
    summary: dict[str, Any] = {
        "out": str(out),
        "start": lo.isoformat(),
        "end": hi.isoformat(),
        "freq": data.freq,
        "service_points": len(data.service),
        "model_versions": [s["name"] for s in data.ctr],
        "decisions": len(data.decisions),
    }
    if as_json:
        print_json(summary)
    else:
        console.print(f"dashboard written to {out} ({lo:%Y-%m-%d %H:%M} .. {hi:%H:%M} UTC)")


def _newest(lake: Lake, metrics: ServiceMetricsLog, decisions: DecisionLog) -> datetime | None:
    from recloop.monitoring.dashboard import latest_data_time

    snaps = metrics.read()
    logged = decisions.list(limit=1)
    return latest_data_time(
        lake, snaps[-1].end if snaps else None, logged[-1].at if logged else None
    )


def register(app: typer.Typer) -> None:
    app.add_typer(monitor_app, name="monitor")
    app.command("dashboard")(dashboard)
