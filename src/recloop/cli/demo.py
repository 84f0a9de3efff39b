"""`recloop demo`: the closed loop end to end, on embedded backends, in a few minutes.

A synthetic world's first days go through ingest; a first model is trained and approved; the
API starts on loopback; simulated users ask for recommendations and click by their latent
tastes; tastes shift and new content arrives; the monitor sees the drop, the loop retrains,
gates and promotes, serving hot-swaps, CTR recovers; traffic stops and the silent-stream alarm
fires; the dashboard is written. `--sabotage` makes the first challenger after the shift one
with deliberately bad hyperparameters that still passes the offline gate: the guard window
rolls it back. (`recloop sim weblogs` writes a world's traffic to files without the loop.)
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from recloop.cli._common import console, print_json, user_errors
from recloop.errors import ConfigError

if TYPE_CHECKING:
    from recloop.loop.demo import DemoConfig, DemoResult, DemoStatus

_STYLE = {
    "promote": "green",
    "rollback": "bold red",
    "reject": "yellow",
    "alarm": "magenta",
    "retrain": "cyan",
    "hold": "dim",
}


def run_demo(
    config: DemoConfig, root: Path, on_status: Callable[[DemoStatus], None], aws: bool = False
) -> DemoResult:
    """The demo itself; imported on call, so `recloop --help` does not load the whole loop."""
    from recloop.loop.demo import run_demo as run

    if not aws:
        return run(config, root, on_status)
    try:
        from recloop.harness.site import AwsSite
    except ImportError as exc:  # moto[server] and the sagemaker SDK: the dev and aws extras
        raise ConfigError(f"--aws needs the dev and aws extras ({exc})") from exc
    return run(config, root, on_status, AwsSite(config, root))


def _render(status: DemoStatus) -> Group:
    stats = status.stats
    head = Table.grid(padding=(0, 2))
    head.add_row(
        Text(f"{status.elapsed:5.0f} s", style="bold"),
        Text(status.phase, style="bold cyan"),
        Text(f"champion v{status.champion or '-'}"),
    )
    head.add_row(
        Text(f"requests {stats.requests}"),
        Text(f"CTR now {status.recent_ctr:.1%} ({status.recent_lists} lists)"),
        Text(f"organic events {stats.organic_events}, errors {stats.errors}"),
    )
    versions = Table(title="CTR by model version (simulated users)", expand=False)
    for name in ("version", "lists", "clicked", "CTR"):
        versions.add_column(name, justify="right")
    for version, (lists, clicked) in sorted(stats.by_version.items(), key=lambda kv: int(kv[0])):
        versions.add_row(f"v{version}", str(lists), str(clicked), f"{clicked / lists:.1%}")
    log = Table(title="decisions", expand=False)
    for name in ("at", "action", "trigger", "detail"):
        log.add_column(name, overflow="fold")
    shown = [d for d in status.decisions if d.trigger != "traffic_drift"][-8:]
    for d in shown:
        style = _STYLE.get(d.action.value, "")
        log.add_row(
            f"{d.at:%H:%M:%S}", Text(d.action.value, style=style), d.trigger, d.detail[:110]
        )
    return Group(head, versions, log)


def _verdict(result: DemoResult) -> Table:
    table = Table(title="demo outcome", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    after = result.drop_detected_after_s
    table.add_row(
        "drop detected",
        f"{'yes' if result.drop_detected else 'NO'}"
        + (f" after {after:.1f} s (window {result.evidence_window_s:.0f} s)" if after else ""),
    )
    table.add_row(
        "retrains / promotions / rollbacks",
        f"{result.retrains} / {result.promotions} / {result.rollbacks}",
    )
    table.add_row("CTR before the shift", f"{result.ctr_before_shift:.1%}")
    table.add_row("CTR after the shift", f"{result.ctr_after_shift:.1%}")
    table.add_row(
        "CTR after retraining",
        f"{result.ctr_recovered:.1%} ({result.recovery_ratio:.0%} of before)",
    )
    table.add_row("silent-stream alarm", "yes" if result.silent_stream_alarm else "NO")
    table.add_row("dashboard", result.dashboard or "-")
    table.add_row("took", f"{result.seconds:.0f} s")
    return table


def demo(
    quick: bool = typer.Option(False, "--quick", help="The short CI run (well under a minute)."),
    minutes: float = typer.Option(
        0.0, "--minutes", min=0.0, help="Run about this long (default: at most 5 minutes)."
    ),
    sabotage: bool = typer.Option(
        False, "--sabotage", help="The first challenger after the shift is deliberately bad."
    ),
    seed: int = typer.Option(7, min=0, help="World seed."),
    root: Path | None = typer.Option(
        None, help="Folder for the lake, registry, features and dashboard (default: a new one)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON, last line."),
    aws: bool = typer.Option(
        False,
        "--aws",
        help="The production wiring (Lambdas, Kinesis, S3, SageMaker jobs and model registry) "
        "on AWS APIs served by moto on 127.0.0.1.",
    ),
) -> None:
    """Watch the loop close: drift -> drop detected -> retrain -> promote -> CTR recovers."""
    from recloop.loop.demo import DemoConfig

    with user_errors():
        if quick and minutes:
            raise ConfigError("--quick and --minutes exclude each other")
        if minutes and minutes < 2:
            raise ConfigError("--minutes needs at least 2 minutes (or use --quick)")
        if quick:
            config = DemoConfig.quick(seed=seed, sabotage=sabotage)
        elif minutes:
            config = DemoConfig.for_minutes(minutes, seed=seed, sabotage=sabotage)
        else:
            config = DemoConfig(seed=seed, sabotage=sabotage)
        if aws:
            config = config.for_aws()
        if root is None:
            base = Path.cwd() / ".recloop" / "demo"
            base.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            root = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=base))
        elif root.exists() and any(root.iterdir()):
            raise ConfigError(f"{root} is not empty: the demo needs a fresh folder")
        root = root.resolve()  # the backends take file:// URIs, which must be absolute
        console.print(
            f"recloop demo{' --aws' if aws else ''} in {root} "
            f"({'quick' if quick else f'{config.budget:.0f} s max'})"
        )
        # Library warnings (a degraded answer, a slow poll) would tear the live view; the level
        # is restored afterwards, so a caller in the same process keeps its logging.
        library_log = logging.getLogger("recloop")
        level = library_log.level
        library_log.setLevel(logging.ERROR)
        try:
            with Live(console=console, refresh_per_second=4, transient=False) as live:
                result = run_demo(config, root, lambda status: live.update(_render(status)), aws)
        finally:
            library_log.setLevel(level)
    console.print(_verdict(result))
    if as_json:
        print_json(result.summary())


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
