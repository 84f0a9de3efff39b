"""`recloop lake ...`: look at what the lake holds; compact its closed hours."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors

lake_app = typer.Typer(help="Inspect and compact the data lake.", no_args_is_help=True)


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
        day = days.setdefault(part.dt, [0, 0, 0, 0, 0])
        day[0] += 1
        day[1] += part.generation is not None
        day[2] += part.objects
        day[3] += part.rows
        day[4] += part.bytes
    table = Table(title=f"lake {result.uri}")
    for column in ("dt", "parts", "compacted", "objects read", "rows", "bytes"):
        table.add_column(column, justify="left" if column == "dt" else "right")
    for dt, (hours, compacted, objects, rows, size) in days.items():
        table.add_row(dt, str(hours), str(compacted), str(objects), f"{rows:,}", f"{size:,}")
    console.print(table)
    console.print(f"events: {result.rows:,} in {len(result.partitions)} hour partitions")
    console.print(f"quarantined: {result.quarantined:,} {result.quarantine_by_reason or ''}")
    for name, rows in result.catalog.items():
        console.print(f"catalog {name}: {rows:,} rows")


@lake_app.command("compact")
def compact_cmd(
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    start: str | None = typer.Option(None, help="ISO start of the hours to consider."),
    end: str | None = typer.Option(None, help="ISO end (exclusive); open hours are skipped."),
    now: str | None = typer.Option(None, help="ISO time that decides which hours are closed."),
    settle_minutes: float | None = typer.Option(
        None, help="An hour is closed this many minutes after it ends (default 15)."
    ),
    rollup_after_hours: float | None = typer.Option(
        None, help="Days that ended this many hours ago roll up into one unit; 0: never (48)."
    ),
    target_mb: float | None = typer.Option(None, help="Target compacted file size, MB (128)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Rewrite each closed hour's small objects as a few large ones (safe to re-run)."""
    from datetime import timedelta

    from recloop.config import get_settings
    from recloop.lake import Lake, compact
    from recloop.lake.lake import as_utc

    with user_errors():
        settings = get_settings()
        lake = Lake.from_uri(lake_uri or settings.lake_uri)
        settle = settings.compact_settle_minutes if settle_minutes is None else settle_minutes
        rollup = (
            settings.compact_rollup_after_hours
            if rollup_after_hours is None
            else rollup_after_hours
        )
        target = settings.compact_target_mb if target_mb is None else target_mb
        results = compact(
            lake.store,
            now=as_utc(now),
            start=as_utc(start),
            end=as_utc(end),
            settle=timedelta(minutes=settle),
            target_bytes=int(target * 1024 * 1024),
            rollup_after=timedelta(hours=rollup) if rollup else None,
        )
    totals = {
        outcome: sum(1 for r in results if r.outcome == outcome)
        for outcome in ("committed", "lost", "retired", "clean")
    }
    folded = sum(r.sources for r in results if r.outcome == "committed")
    if as_json:
        print_json(
            {
                "uri": lake.uri,
                "hours": totals,
                "objects_folded": folded,
                "results": [
                    {**asdict(r), "hour": r.hour.isoformat()}
                    for r in results
                    if r.outcome != "clean"
                ],
            }
        )
        return
    for r in results:
        if r.outcome == "committed":
            console.print(
                f"{r.hour:%Y-%m-%d %H}:00  generation {r.generation}: {r.sources:,} objects, "
                f"{r.rows_in:,} rows -> {r.files} file(s), {r.rows_out:,} rows, "
                f"{r.bytes_in:,} -> {r.bytes_out:,} bytes"
            )
        elif r.outcome != "clean":
            console.print(f"{r.hour:%Y-%m-%d %H}:00  {r.outcome} (generation {r.generation})")
    console.print(
        f"hours: {totals['committed']} compacted, {totals['retired']} cleaned up, "
        f"{totals['lost']} lost to a concurrent run, {totals['clean']} already compact; "
        f"{folded:,} objects folded in"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")
