"""`recloop import ...`: outside datasets into the lake through the ingest path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from recloop.cli._common import console, print_json, user_errors
from recloop.cli.ingest import _summary_table

if TYPE_CHECKING:
    from recloop.importers import ImportResult
    from recloop.ingest import IngestReport

import_app = typer.Typer(
    help="Import interactions or MovieLens into the lake.", no_args_is_help=True
)

LakeOption = typer.Option(None, "--lake-uri", help="Lake URI (default: RECLOOP_LAKE_URI).")
JsonOption = typer.Option(False, "--json", help="Print the summary as one JSON object.")


def _progress(as_json: bool) -> Callable[[IngestReport], None]:
    written = 0

    def on_batch(part: IngestReport) -> None:
        nonlocal written
        written += part.written + part.duplicates
        if not as_json:
            console.print(f"  {written:,} events through ingest", highlight=False)

    return on_batch


def _show(result: ImportResult, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    console.print(_summary_table(result.report, result.source))
    for name, obj in result.catalogs.items():
        state = "written" if obj.created else "unchanged"
        console.print(f"catalog {name}: {obj.rows:,} rows ({state}) {obj.key}")
    if result.problems.count:
        console.print(
            f"[yellow]{result.problems.count:,} bad rows[/yellow] were quarantined "
            "(see `recloop lake summary`); the first:"
        )
        for example in result.problems.examples[:10]:
            console.print(f"  {example}", highlight=False, markup=False)


@import_app.command("interactions")
def interactions(
    path: Path = typer.Argument(..., help="CSV with user_id, item_id, timestamp[, event_type]."),
    delimiter: str = typer.Option(",", help="Field separator."),
    encoding: str = typer.Option("utf-8-sig", help="Text encoding (a BOM is skipped)."),
    event_type: str = typer.Option("view", help="Event type of rows without an event_type."),
    lake_uri: str | None = LakeOption,
    as_json: bool = JsonOption,
) -> None:
    """Import a CSV of interactions; timestamps as ISO 8601 or epoch seconds."""
    from recloop.config import get_settings
    from recloop.importers import import_interactions
    from recloop.lake import Lake

    settings = get_settings()
    with user_errors():
        lake = Lake.from_uri(lake_uri or settings.lake_uri)
        result = import_interactions(
            path,
            lake,
            settings,
            delimiter=delimiter,
            default_event_type=event_type,
            on_batch=_progress(as_json),
        )
    _show(result, as_json)


@import_app.command("movielens")
def movielens(
    folder: Path = typer.Argument(..., help="An unpacked ml-100k or ml-1m folder."),
    click_threshold: int = typer.Option(4, help="Ratings at or above this are also clicks."),
    lake_uri: str | None = LakeOption,
    as_json: bool = JsonOption,
) -> None:
    """Import MovieLens 100K or 1M: ratings as views (and clicks), movies, users."""
    from recloop.config import get_settings
    from recloop.importers import import_movielens
    from recloop.lake import Lake

    settings = get_settings()
    with user_errors():
        lake = Lake.from_uri(lake_uri or settings.lake_uri)
        result = import_movielens(
            folder, lake, settings, click_threshold=click_threshold, on_batch=_progress(as_json)
        )
    _show(result, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
