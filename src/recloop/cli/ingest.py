"""`recloop ingest FILE|-`: the Lambda's ingest core on a local file or stdin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors

if TYPE_CHECKING:
    from recloop.config import Settings
    from recloop.ingest import IngestReport
    from recloop.ingest.history import LazyHistorySink
    from recloop.serving.features import FeatureStore

_HISTORY_TIMEOUT_MS = 30_000


def _summary_table(report: IngestReport, source: str) -> Table:
    table = Table(title=f"ingest {source}")
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_row("received", "", f"{report.received:,}")
    table.add_row("written", "", f"{report.written:,}")
    for reason, count in sorted(report.filtered.items()):
        table.add_row("filtered", reason, f"{count:,}")
    for reason, count in sorted(report.quarantined.items()):
        table.add_row("quarantined", reason, f"{count:,}")
    table.add_row("duplicates", "", f"{report.duplicates:,}")
    if report.history_errors:
        table.add_row(
            "history not updated",
            "feature store unavailable",
            f"batches: {report.history_errors:,}",
        )
    return table


def ingest(
    source: str = typer.Argument(
        ...,
        help="JSON lines, Logstash events or access-log lines; '-' is stdin; .gz is read as gzip.",
    ),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    chunk_size: int = typer.Option(20_000, min=1, help="Lines per batch (bounds memory)."),
    allow_old: bool = typer.Option(
        False, "--allow-old", help="Accept events older than RECLOOP_MAX_EVENT_AGE_DAYS."
    ),
    features: bool = typer.Option(
        True, help="Also append users' recent history to the feature store (RECLOOP_FEATURES_URI)."
    ),
) -> None:
    """Ingest weblogs into the lake: decode, filter, validate, dedupe, write, quarantine."""
    from recloop.config import get_settings
    from recloop.ingest import Ingestor
    from recloop.lake import Lake

    settings = get_settings()
    with user_errors(), ExitStack() as stack:
        history = stack.enter_context(_history_sink(settings)) if features else None
        ingestor = Ingestor(Lake.from_uri(lake_uri or settings.lake_uri), settings, history)
        total = (
            None
            if source == "-"
            else Path(source).stat().st_size
            if Path(source).is_file()
            else None
        )
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[events]} written"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task("ingesting", total=total, events="0")
            written = 0

            def advance(bytes_read: int, part: IngestReport) -> None:
                nonlocal written
                written += part.written
                progress.update(task, advance=bytes_read, events=f"{written:,}")

            report = ingestor.ingest_file(
                source, chunk_size=chunk_size, check_age=not allow_old, on_chunk=advance
            )
    if as_json:
        print_json(report.to_dict())
        return
    console.print(_summary_table(report, source))
    if report.quarantined_total:
        console.print(
            f"[yellow]{report.quarantined_total:,} input units were quarantined[/yellow] "
            "(reason, detail and a redacted payload under quarantine/ in the lake; "
            "`recloop lake summary` counts them by reason). Every good line was written."
        )


@contextmanager
def _history_sink(settings: Settings) -> Iterator[LazyHistorySink]:
    """The feature store as the real-time history sink, built on the first events (an
    unreachable store costs history errors, never the lake writes), closed at the end."""
    from recloop.ingest.history import LazyHistorySink
    from recloop.serving.features import features_from_uri

    def build() -> FeatureStore:
        # A batch append, not a request: give it a batch's deadline.
        return features_from_uri(settings.features_uri, timeout_ms=_HISTORY_TIMEOUT_MS)

    # one try per run: a store that is down stays down for the rest of a file
    sink = LazyHistorySink(build, retry_after_s=float("inf"))
    try:
        yield sink
    finally:
        sink.close()


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
