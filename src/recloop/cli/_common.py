"""Helpers shared by the CLI modules: settings, the console, errors as exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from recloop.errors import RecloopError

# Human output on stderr keeps stdout clean for --json; soft wrap keeps an error message (and
# the path in it) on one line whatever the terminal width. No emoji codes: a Secrets Manager
# ARN's ":secret:" printed as a pictogram.
console = Console(stderr=True, soft_wrap=True, emoji=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn recloop's own errors into a one-line message and exit code 2, not a traceback."""
    try:
        yield
    except RecloopError as exc:
        # The message is text, not markup: "[...]" in a path or a value must print as is.
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc


def print_json(payload: dict[str, Any]) -> None:
    """One JSON object on its own line on stdout (the last line a script reads)."""
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()
