"""`recloop ...`: every stage runnable by hand (Typer).

Each area registers its commands from its own module, so one area's change touches one file.
Typer builds every command's signature on each invocation, so an area module imports its heavy
libraries (numpy, pyarrow, the lake, the registry, ...) inside its command functions: at module
level every `recloop ...`, `--help` included, would pay for them (tests/unit/test_cli_startup.py).
"""

from __future__ import annotations

import typer

from recloop.cli import demo as demo_cli
from recloop.cli import imports as imports_cli
from recloop.cli import ingest as ingest_cli
from recloop.cli import lake as lake_cli
from recloop.cli import loop as loop_cli
from recloop.cli import monitor as monitor_cli
from recloop.cli import replay as replay_cli
from recloop.cli import serve as serve_cli
from recloop.cli import sim as sim_cli
from recloop.cli import train as train_cli

app = typer.Typer(
    name="recloop",
    help="A recommender service that keeps itself fresh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
lake_cli.register(app)
serve_cli.register(app)
ingest_cli.register(app)
sim_cli.register(app)
train_cli.register(app)
imports_cli.register(app)
demo_cli.register(app)
monitor_cli.register(app)
loop_cli.register(app)
replay_cli.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except Exception as exc:
        message = settings_error(exc)
        if message is None:
            raise
        typer.echo(message, err=True)
        raise SystemExit(2) from None


def settings_error(exc: BaseException) -> str | None:
    """A clear message for invalid RECLOOP_* settings (None for any other error).

    pydantic's own text is a traceback that also echoes the input, every RECLOOP_* value
    secrets included; this names each variable and what is wrong, never its value.
    """
    from pydantic import ValidationError  # here: `recloop --help` must not import pydantic

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    lines = ["error: invalid settings (RECLOOP_* environment variables):"]
    for error in exc.errors(include_url=False, include_input=False):
        field = "_".join(str(part) for part in error["loc"]).upper()
        name = f"RECLOOP_{field}" if field else "settings"
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)
