"""`recloop train | runs | registry | recommend-batch | evaluate`: training and its records."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors
from recloop.errors import ConfigError

if TYPE_CHECKING:
    from recloop.registry import ModelRegistry, ModelVersion
    from recloop.training.runs import RunRecord, RunTracker

runs_app = typer.Typer(
    help="Experiment runs: list, show, compare, reproduce.", no_args_is_help=True
)
registry_app = typer.Typer(help="The model registry: list, approve, reject.", no_args_is_help=True)

LAKE = typer.Option(None, "--lake", help="Lake URI (default: RECLOOP_LAKE_URI).")
REGISTRY = typer.Option(None, "--registry", help="Registry URI (default: RECLOOP_REGISTRY_URI).")
JSON = typer.Option(False, "--json", help="Print one JSON object on stdout.")


def open_registry(uri: str | None) -> ModelRegistry:
    """The registry at `uri` (default: settings); imported on call, as it loads the gate's scipy."""
    from recloop.registry import open_registry as open_uri

    return open_uri(uri)


# ---- recloop train -------------------------------------------------------------------------------


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs; values are JSON when they parse (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE (or FAMILY.NAME=VALUE)")
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw
    return out


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1)

        def hook(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=max(total, 1))

        yield hook


def train(
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Family to try (repeat); default: all."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="NAME=VALUE for every family having it, or FAMILY.NAME=VALUE."
    ),
    since: str | None = typer.Option(None, help="Window start (ISO date/time; default: all)."),
    until: str | None = typer.Option(None, help="Window end, exclusive (default: newest data)."),
    backend: str = typer.Option("local", help="local (in-process) or sagemaker (a training job)."),
    holdout_days: float | None = typer.Option(
        None, help="Holdout length (RECLOOP_TRAIN_HOLDOUT_DAYS)."
    ),
    validation_days: float | None = typer.Option(None, help="Search validation window length."),
    budget: int | None = typer.Option(None, help="Configurations tried per family."),
    metric: str | None = typer.Option(None, help="Primary metric, e.g. recall@10."),
    min_holdout_users: int | None = typer.Option(
        None,
        "--min-holdout-users",
        help="Fewer holdout users: refuse to decide (RECLOOP_TRAIN_MIN_HOLDOUT_USERS, 200).",
    ),
    repeats: str | None = typer.Option(
        None,
        help="Holdout items the user already had: miss, drop or allow (RECLOOP_TRAIN_REPEATS).",
    ),
    lake_uri: str | None = LAKE,
    registry_uri: str | None = REGISTRY,
    wait: bool = typer.Option(True, help="sagemaker: wait for the job to finish."),
    as_json: bool = JSON,
) -> None:
    """Train on a lake window: search, holdout, refit, bundle, register and gate."""
    from recloop.training.pipeline import TrainOptions

    with user_errors():
        if backend not in ("local", "sagemaker"):
            raise ConfigError(f"--backend must be local or sagemaker, not {backend!r}")
        k = int(metric.partition("@")[2]) if metric and "@" in metric else None
        options = TrainOptions.from_settings(
            families=tuple(model) or None,
            params=parse_params(param) or None,
            since=since,
            until=until,
            holdout_days=holdout_days,
            validation_days=validation_days,
            search_budget=budget,
            metric=metric,
            k=k,
            min_holdout_users=min_holdout_users,
            repeats=repeats,
        )
        if metric:
            from dataclasses import replace

            options = replace(options, gate=replace(options.gate, metric=metric))
        options.validate()
        from recloop.config import get_settings

        lake = lake_uri or get_settings().lake_uri
        if backend == "sagemaker":
            _train_sagemaker(options, lake, registry_uri, wait, as_json)
            return
        from recloop.training.sagemaker import run_local

        registry = open_registry(registry_uri)
        with _progress(not as_json) as hook:
            result = run_local(options, lake, registry, progress=hook)
    if as_json:
        print_json(result.summary())
        return
    _print_training(result)


def _train_sagemaker(
    options: Any, lake: str, registry_uri: str | None, wait: bool, as_json: bool
) -> None:
    from recloop.training.sagemaker import LaunchConfig, launch

    config = LaunchConfig.from_settings(lake_uri=lake, registry_uri=registry_uri)
    config.validate()
    console.print(f"launching a SageMaker training job on {config.instance_type} ...")
    result = launch(options, config, wait=wait, logs=wait)
    payload = {
        "job_name": result.job_name,
        "status": result.status,
        "model_artifacts": result.model_artifacts,
        "failure_reason": result.failure_reason,
        "version": result.version.to_dict() if result.version else None,
    }
    if as_json:
        print_json(payload)
        return
    console.print(f"job {result.job_name}: {result.status}")
    if result.version is not None:
        _print_versions([result.version], title="registered")


def _print_training(result: Any) -> None:
    if result.trials:
        metric = _metric(result)
        other = f"ndcg@{metric.partition('@')[2]}" if not metric.startswith("ndcg") else ""
        table = Table(title="search (validation window), best first")
        for column in ("family", "params", metric, other, "fit s", "note"):
            if column:
                left = column in ("family", "params", "note")
                table.add_column(column, justify="left" if left else "right")
        for trial in sorted(result.trials, key=lambda t: -t.metrics.get(metric, -1)):
            cells = [_fmt(trial.metrics.get(metric))]
            if other:
                cells.append(_fmt(trial.metrics.get(other)))
            table.add_row(
                trial.family,
                json.dumps(trial.params, sort_keys=True) if trial.params else "defaults",
                *cells,
                f"{trial.fit_seconds:.2f}",
                trial.error or "",
            )
        console.print(table)
    holdout = Table(title=f"holdout: {result.family} against popularity")
    for column in ("metric", result.family, "popularity"):
        holdout.add_column(column, justify="left" if column == "metric" else "right")
    for name, value in result.holdout.items():
        if not name.startswith("popularity_"):
            holdout.add_row(name, _fmt(value), _fmt(result.holdout.get(f"popularity_{name}")))
    console.print(holdout)
    timings = "  ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.run.timings.items())
    console.print(f"[dim]timings: {timings}[/dim]")
    colour = "green" if result.decision and result.decision.approved else "yellow"
    if result.decision is not None:
        console.print(f"[{colour}]gate:[/{colour}] {result.decision.reason}")
    if result.version is not None:
        console.print(
            f"run {result.run.run_id} -> version {result.version.version} ({result.version.status})"
        )


def _metric(result: Any) -> str:
    return str(result.run.config.get("metric", "recall@10"))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# ---- recloop runs --------------------------------------------------------------------------------


def _tracker(registry_uri: str | None) -> RunTracker:
    from recloop.training.runs import RunTracker

    return RunTracker.for_registry(open_registry(registry_uri))


@runs_app.command("list")
def runs_list(registry_uri: str | None = REGISTRY, as_json: bool = JSON) -> None:
    """Every recorded run, oldest first."""
    with user_errors():
        records = _tracker(registry_uri).list()
    if as_json:
        print_json({"runs": [_run_summary(r) for r in records]})
        return
    table = Table(title="runs")
    for column in ("run", "kind", "status", "started", "seconds", "model", "version", "holdout"):
        table.add_column(column)
    for record in records:
        summary = _run_summary(record)
        table.add_row(
            record.run_id,
            record.kind,
            record.status,
            record.started_at[:19],
            f"{record.duration:.1f}" if record.duration is not None else "-",
            str(summary["family"] or "-"),
            str(summary["version"] or "-"),
            _fmt(summary["metric"]),
        )
    console.print(table)


def _run_summary(record: RunRecord) -> dict[str, Any]:
    metric = str(record.config.get("metric", "recall@10"))
    version = record.results.get("version") or {}
    return {
        "run_id": record.run_id,
        "kind": record.kind,
        "status": record.status,
        "started_at": record.started_at,
        "family": record.params.get("family"),
        "version": version.get("version"),
        "metric_name": metric,
        "metric": record.metrics.get(f"holdout.{metric}"),
    }


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="The run id."),
    log: bool = typer.Option(False, "--log", help="Print the run's log too."),
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Everything a run recorded."""
    with user_errors():
        tracker = _tracker(registry_uri)
        record = tracker.get(run_id)
        text = tracker.log_text(run_id) if log else ""
    if as_json:
        print_json(record.to_dict())
        return
    snapshot = record.snapshot or {}
    console.print(f"[bold]run {record.run_id}[/bold] ({record.kind}, {record.status})")
    console.print(f"started {record.started_at}, finished {record.finished_at}")
    console.print(f"git {record.git.get('sha')} dirty={record.git.get('dirty')}")
    console.print("packages " + ", ".join(f"{k} {v}" for k, v in record.packages.items()))
    console.print(
        f"data {snapshot.get('lake_uri')} [{snapshot.get('start')} .. "
        f"{snapshot.get('end')}): {len(snapshot.get('objects', []))} objects, "
        f"{snapshot.get('rows')} rows, digest {snapshot.get('digest')}"
    )
    console.print(f"seeds {record.seeds}  params {json.dumps(record.params, sort_keys=True)}")
    table = Table(title="metrics")
    table.add_column("name")
    table.add_column("value", justify="right")
    for name, value in sorted(record.metrics.items()):
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    console.print("timings " + "  ".join(f"{k} {v:.2f}s" for k, v in record.timings.items()))
    for name, uri in record.artifacts.items():
        console.print(f"artifact {name}: {uri}")
    gate = record.results.get("gate")
    if gate:
        console.print(f"gate: {gate.get('reason')}")
    if record.error:
        console.print(f"[red]error:[/red] {record.error}")
    if log:
        console.print(text, markup=False, highlight=False)


@runs_app.command("compare")
def runs_compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Metrics, chosen model and data side by side; the last column is last minus first."""
    with user_errors():
        if len(run_ids) < 2:
            raise ConfigError("compare needs at least two run ids")
        tracker = _tracker(registry_uri)
        records = [tracker.get(run_id) for run_id in run_ids]
    names = sorted({name for r in records for name in r.metrics})
    if as_json:
        print_json(
            {"runs": run_ids, "metrics": {n: [r.metrics.get(n) for r in records] for n in names}}
        )
        return
    table = Table(title="runs compared")
    table.add_column("")
    for record in records:
        table.add_column(record.run_id, justify="right")
    table.add_column("last - first", justify="right")
    rows: list[tuple[str, list[str]]] = [
        ("family", [str(r.params.get("family", "-")) for r in records]),
        ("params", [json.dumps(r.params.get("model", {}), sort_keys=True) for r in records]),
        ("data digest", [str((r.snapshot or {}).get("digest", "-"))[:12] for r in records]),
        ("git", [str(r.git.get("sha", "-"))[:10] for r in records]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells, "")
    for name in names:
        values = [r.metrics.get(name) for r in records]
        first, last = values[0], values[-1]
        diff = f"{last - first:+.4f}" if first is not None and last is not None else ""
        table.add_row(name, *(_fmt(v) for v in values), diff)
    console.print(table)


@runs_app.command("reproduce")
def runs_reproduce(
    run_id: str = typer.Argument(..., help="The run to re-run."),
    tolerance: float = typer.Option(1e-9, help="Largest metric difference that still matches."),
    lake_uri: str | None = LAKE,
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Re-run a recorded run on exactly its lake objects and compare the metrics (exit 1 when
    they differ)."""
    from recloop.lake import Lake
    from recloop.training.pipeline import reproduce
    from recloop.training.runs import RunTracker

    with user_errors():
        registry = open_registry(registry_uri)
        tracker = RunTracker.for_registry(registry)
        lake = Lake.from_uri(lake_uri) if lake_uri else None
        with _progress(not as_json) as hook:
            result = reproduce(run_id, tracker, registry, lake=lake, progress=hook)
    matches = result.matches(tolerance)
    if as_json:
        print_json(
            {
                "run_id": run_id,
                "new_run_id": result.new_run_id,
                "matches": matches,
                "max_abs_diff": result.max_abs_diff,
                "recorded": result.recorded,
                "reproduced": result.reproduced,
            }
        )
    else:
        table = Table(title=f"run {run_id} reproduced as {result.new_run_id}")
        for column in ("metric", "recorded", "reproduced"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for name, value in result.recorded.items():
            table.add_row(name, _fmt(value), _fmt(result.reproduced.get(name)))
        console.print(table)
        verdict = "[green]reproduced[/green]" if matches else "[red]differs[/red]"
        console.print(f"{verdict}: largest difference {result.max_abs_diff:.3g}")
    if not matches:
        raise typer.Exit(1)


# ---- recloop registry ----------------------------------------------------------------------------


def _print_versions(versions: list[ModelVersion], title: str = "model versions") -> None:
    table = Table(title=title)
    for column in ("version", "status", "family", "run", "recall@10", "created", "reason"):
        table.add_column(column, overflow="fold")
    for v in versions:
        colour = {"Approved": "green", "Rejected": "red"}.get(str(v.status), "yellow")
        table.add_row(
            v.version,
            f"[{colour}]{v.status}[/{colour}]",
            v.family or "-",
            v.run_id or "-",
            _fmt(v.metrics.get("recall@10")),
            v.created_at[:19],
            v.reason or "",
        )
    console.print(table)


@registry_app.command("list")
def registry_list(registry_uri: str | None = REGISTRY, as_json: bool = JSON) -> None:
    """Every model version with its status; the champion is the newest Approved one."""
    with user_errors():
        registry = open_registry(registry_uri)
        versions = registry.list()
        champion = registry.champion()
    if as_json:
        print_json(
            {
                "uri": registry.uri,
                "champion": champion.version if champion else None,
                "versions": [v.to_dict() for v in versions],
            }
        )
        return
    _print_versions(versions, title=f"registry {registry.uri}")
    console.print(f"champion: {champion.version if champion else 'none (nothing approved)'}")


def _decide(
    approve: bool, version: str, reason: str, registry_uri: str | None, as_json: bool
) -> None:
    with user_errors():
        registry = open_registry(registry_uri)
        if approve:
            result = registry.approve(version, reason, {"by": "recloop registry approve"})
        else:
            result = registry.reject(version, reason, {"by": "recloop registry reject"})
    if as_json:
        print_json(result.to_dict())
        return
    _print_versions([result], title="updated")


@registry_app.command("approve")
def registry_approve(
    version: str = typer.Argument(..., help="The version to approve."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the version)."),
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Approve a version by hand (it becomes champion if it is the newest approved)."""
    _decide(True, version, reason, registry_uri, as_json)


@registry_app.command("reject")
def registry_reject(
    version: str = typer.Argument(..., help="The version to reject."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the version)."),
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Reject a version (rejecting the champion rolls back to the previous approved one)."""
    _decide(False, version, reason, registry_uri, as_json)


# ---- batch inference and evaluation --------------------------------------------------------------


def _load_bundle(registry: ModelRegistry, model: str, folder: Path) -> Any:
    from recloop.errors import NotFoundError
    from recloop.training.bundle import ModelBundle

    if model == "champion":
        champion = registry.champion()
        if champion is None:
            raise NotFoundError(f"registry {registry.uri} has no approved model")
        model = champion.version
    return ModelBundle.load(registry.download(model, folder / model))


def recommend_batch(
    model: str = typer.Option(..., "--model", help="A version number, or 'champion'."),
    users: Path = typer.Option(..., "--users", help="User ids: one a line, or CSV with user_id."),
    k: int = typer.Option(10, "--k", help="Recommendations per user."),
    out: Path = typer.Option(..., "--out", help="CSV to write (user_id,item_id,rank,score)."),
    include_seen: bool = typer.Option(False, help="Allow the user's training items."),
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Top-K recommendations for a list of users, as a CSV file (e-mail campaigns)."""
    from recloop.training.batch import read_user_ids, write_csv
    from recloop.training.batch import recommend_batch as run_batch

    with user_errors(), tempfile.TemporaryDirectory(prefix="recloop-batch-") as tmp:
        user_ids = read_user_ids(users)
        bundle = _load_bundle(open_registry(registry_uri), model, Path(tmp))
        known = sum(1 for u in user_ids if bundle.user_index(u) is not None)
        rows = write_csv(run_batch(bundle, user_ids, k, exclude_seen=not include_seen), out)
        version = bundle.version
    summary = {
        "model": version,
        "users": len(user_ids),
        "known_users": known,
        "rows": rows,
        "out": str(out),
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"model {version}: {rows:,} rows for {len(user_ids):,} users "
        f"({len(user_ids) - known:,} unknown -> popularity) in {out}"
    )


def evaluate(
    model: str = typer.Option(..., "--model", help="A version number, or 'champion'."),
    out: Path = typer.Option(Path("evaluation.html"), "--out", help="HTML report to write."),
    since: str | None = typer.Option(None, help="Window start (default: the model's train end)."),
    until: str | None = typer.Option(None, help="Window end (default: start + holdout days)."),
    max_users: int | None = typer.Option(None, help="Users sampled (RECLOOP_TRAIN_EVAL_USERS)."),
    lake_uri: str | None = LAKE,
    registry_uri: str | None = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Score a registered model on lake clicks; write an HTML report with PNG plots."""
    from recloop.config import get_settings
    from recloop.lake import Lake
    from recloop.training.report import evaluate_bundle, write_report

    settings = get_settings()
    with user_errors(), tempfile.TemporaryDirectory(prefix="recloop-eval-") as tmp:
        bundle = _load_bundle(open_registry(registry_uri), model, Path(tmp))
        report = evaluate_bundle(
            bundle,
            Lake.from_uri(lake_uri or settings.lake_uri),
            start=_when(since),
            end=_when(until),
            days=settings.train_holdout_days,
            max_users=max_users or settings.train_eval_users,
            seed=settings.train_seed,
        )
        path = write_report(report, out)
    if as_json:
        print_json({**report.to_dict(), "report": str(path)})
        return
    if report.overlaps_training:
        console.print("[yellow]warning:[/yellow] the window overlaps the model's training data")
    at = report.ks.index(10) if 10 in report.ks else -1
    console.print(
        f"model {report.version} on {report.users:,} users: "
        f"recall@{report.ks[at]} {report.model['recall'][at]:.4f} "
        f"(popularity {report.popularity['recall'][at]:.4f}); report {path}"
    )


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO date or time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.add_typer(runs_app, name="runs")
    app.add_typer(registry_app, name="registry")
    app.command("recommend-batch")(recommend_batch)
    app.command("evaluate")(evaluate)
