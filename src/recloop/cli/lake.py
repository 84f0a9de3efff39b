"""`recloop lake ...`: look at what the lake holds."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors

lake_app = typer.Typer(help="Inspect the data lake.", no_args_is_help=True)


@lake_app.command("summary")
def summary(
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Partitions, rows and quarantine counts."""
    from recloop.config import get_settings
    from recloop.lake import Lake

    with user_errors():
        result = Lake.from_uri(lake_uri or get_settings().lake_uri).summary()
    if as_json:
        print_json(
            {
                "uri": result.uri,
                "rows": result.rows,
                "quarantined": result.quarantined,
                "partitions": [asdict(p) for p in result.partitions],
                "quarantine_by_reason": result.quarantine_by_reason,
                "catalog": result.catalog,
            }
        )
        return
    days: dict[str, list[int]] = {}
    for part in result.partitions:
        day = days.setdefault(part.dt, [0, 0, 0, 0])
        day[0] += 1
        day[1] += part.objects
        day[2] += part.rows
        day[3] += part.bytes
    table = Table(title=f"lake {result.uri}")
    for column in ("dt", "hours", "objects", "rows", "bytes"):
        table.add_column(column, justify="left" if column == "dt" else "right")
    for dt, (hours, objects, rows, size) in days.items():
        table.add_row(dt, str(hours), str(objects), f"{rows:,}", f"{size:,}")
    console.print(table)
    console.print(f"events: {result.rows:,} in {len(result.partitions)} hour partitions")
    console.print(f"quarantined: {result.quarantined:,} {result.quarantine_by_reason or ''}")
    for name, rows in result.catalog.items():
        console.print(f"catalog {name}: {rows:,} rows")


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")
