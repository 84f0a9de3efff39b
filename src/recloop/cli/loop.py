"""`recloop loop [--once]` runs the closed loop; `recloop loop history` lists its decisions."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors
from recloop.errors import ConfigError

if TYPE_CHECKING:
    from recloop.loop import RetrainLoop, StepResult
    from recloop.monitoring.decisions import Decision

loop_app = typer.Typer(
    help="The closed loop: monitor -> retrain -> gate -> promote -> guard -> rollback.",
    invoke_without_command=True,
    no_args_is_help=False,
)

_STYLE = {
    "promote": "green",
    "rollback": "red",
    "reject": "yellow",
    "alarm": "magenta",
    "retrain": "cyan",
    "hold": "dim",
}


def _build_loop() -> RetrainLoop:
    from recloop.config import get_settings
    from recloop.loop.wiring import build_loop

    # The same controller as the Lambdas; a SageMaker job per retrain when one is configured.
    return build_loop(get_settings())


def _print_step(step: StepResult) -> None:
    firing = [a.detector for a in step.report.firing] if step.report else []
    line = f"{step.now:%H:%M:%S} champion v{step.champion or '-'}"
    line += f" | alarms: {', '.join(firing) or 'none'}"
    console.print(line)
    for d in step.decisions:
        style = _STYLE.get(d.action.value, "")
        console.print(f"  [{style}]{d.action.value}[/{style}] ({d.trigger}) {d.detail}")


@loop_app.callback()
def run(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="One pass, then exit (cron, Lambda)."),
    interval: float = typer.Option(60.0, min=0.1, help="Seconds between passes."),
    passes: int = typer.Option(0, min=0, help="Stop after this many passes (0: never)."),
    as_json: bool = typer.Option(False, "--json", help="Print the last pass as JSON."),
) -> None:
    """Run passes of the loop; each decision goes to the decision log with its evidence."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        loop = _build_loop()
        done = 0
        step = None
        while True:
            started = time.monotonic()
            step = loop.step(datetime.now(UTC))
            _print_step(step)
            done += 1
            if once or (passes and done >= passes):
                break
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    if as_json and step is not None:
        print_json(
            {
                "now": step.now.isoformat(),
                "champion": step.champion,
                "actions": step.actions(),
                "decisions": [d.to_dict() for d in step.decisions],
                "firing": [a.detector for a in step.report.firing] if step.report else [],
            }
        )


def _row(d: Decision) -> list[str]:
    style = _STYLE.get(d.action.value, "")
    versions = d.model_version or ""
    if d.previous_version:
        versions = f"{d.previous_version} -> {versions}" if versions else d.previous_version
    return [
        f"{d.at:%Y-%m-%d %H:%M:%S}",
        f"[{style}]{d.action.value}[/{style}]",
        d.trigger,
        versions,
        d.detail,
    ]


@loop_app.command("history")
def history(
    limit: int = typer.Option(50, min=1, help="The newest N decisions."),
    action: list[str] = typer.Option([], "--action", help="Only these actions (repeatable)."),
    since: str | None = typer.Option(None, help="ISO time: only decisions from then on."),
    as_json: bool = typer.Option(False, "--json", help="Print the decisions as JSON."),
) -> None:
    """The loop's decisions, oldest first: trigger, versions, and why."""
    from recloop.config import get_settings
    from recloop.monitoring.decisions import Action, DecisionLog

    with user_errors():
        known = {a.value for a in Action}
        wrong = sorted(set(action) - known)
        if wrong:
            raise ConfigError(f"unknown action(s) {wrong}; known: {sorted(known)}")
        start = None
        if since is not None:
            try:
                start = datetime.fromisoformat(since)
            except ValueError as exc:
                raise ConfigError(f"--since {since!r} is not an ISO time") from exc
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
        log = DecisionLog.from_settings(get_settings())
        found = log.list(since=start, actions=action or None, limit=limit)
    if as_json:
        payload: dict[str, Any] = {"log": log.uri, "decisions": [d.to_dict() for d in found]}
        print_json(payload)
        return
    table = Table(title=f"decisions ({log.uri})", show_lines=False)
    for name in ("at (UTC)", "action", "trigger", "versions", "detail"):
        table.add_column(name, overflow="fold")
    for d in found:
        table.add_row(*_row(d))
    console.print(table)
    if not found:
        console.print("no decisions yet")


def register(app: typer.Typer) -> None:
    app.add_typer(loop_app, name="loop")
