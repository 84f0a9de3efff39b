"""`recloop demo` (interim): a synthetic world's recent days through the ingest path.

Until the closed loop exists (monitoring issue), the README's main command generates a world,
ingests its last DAYS days of weblogs into the lake (.recloop/lake, or RECLOOP_LAKE_URI),
writes its catalog and user profiles, and shows the lake summary.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from datetime import timedelta

import typer

from recloop.cli._common import console, print_json, user_errors
from recloop.cli.lake import summary as lake_summary
from recloop.config import get_settings
from recloop.importers import write_catalog
from recloop.ingest import Ingestor, IngestReport
from recloop.lake import Lake
from recloop.sim import Format, Traffic, World, WorldConfig, default_start, iter_lines


def _ingest(ingestor: Ingestor, traffic: Traffic, fmt: Format, batch_id: str) -> IngestReport:
    if fmt is Format.TRACKER:
        return ingestor.ingest_events(traffic.tracker_records(), batch_id, chunk_size=50_000)
    # Log formats go through the record path, as the Lambda and `recloop ingest` take them.
    records = [
        (f"{batch_id}:{n}", line.encode()) for n, line in enumerate(iter_lines(traffic, fmt))
    ]
    report = IngestReport()
    for n, lo in enumerate(range(0, len(records), 50_000)):
        report += ingestor.ingest_records(records[lo : lo + 50_000], f"{batch_id}-{n:05d}")
    return report


def demo(
    days: int = typer.Option(1, min=1, max=60, help="Days of traffic, ending last midnight UTC."),
    users: int = typer.Option(2000, min=1, help="Signed-in users in the world."),
    items: int = typer.Option(1000, min=1, help="Items in the initial catalog."),
    seed: int = typer.Option(0, min=0, help="World seed."),
    fmt: Format = typer.Option(Format.TRACKER, "--format", help="Weblog shape to ingest."),
    lake_uri: str | None = typer.Option(None, help="Lake URI (default: RECLOOP_LAKE_URI)."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary JSON object last."),
) -> None:
    """Generate a synthetic world, ingest its last DAYS days, show the lake."""
    began = time.perf_counter()
    settings = get_settings()
    uri = lake_uri or settings.lake_uri
    with user_errors():
        lake = Lake.from_uri(uri)
        start = default_start(days)
        config = WorldConfig.scaled(users, items, seed, start)
        world = World(config)
        # Batch ids name the world and the day: a re-run of the same demo writes nothing twice.
        tag = hashlib.sha256(repr((users, items, seed, fmt.value)).encode()).hexdigest()[:8]
        ingestor = Ingestor(lake, settings)
        total = IngestReport()
        generated = 0
        if not as_json:
            console.print(f"world: {users:,} users, {items:,} items, seed {seed} -> {lake.uri}")
        for day, traffic in world.simulate(start, days, max(1, items // 100)):
            report = _ingest(ingestor, traffic, fmt, f"demo-sim{seed}-{tag}-{day:%Y%m%d}")
            total += report
            generated += report.received
            if not as_json:
                filtered = ", ".join(f"{k} {v:,}" for k, v in sorted(report.filtered.items()))
                console.print(
                    f"{day:%Y-%m-%d}: {report.received:,} received, {report.written:,} written, "
                    f"{report.duplicates:,} duplicates, filtered: {filtered or 'none'}"
                )
        end = start + timedelta(days=days)
        catalogs = {
            name: write_catalog(lake, name, table, end, f"sim{seed}-{tag}")
            for name, table in (("items", world.catalog_table()), ("users", world.users_table()))
        }
        state = lake.summary()
    elapsed = round(time.perf_counter() - began, 2)
    if as_json:
        print_json(
            {
                "lake_uri": lake.uri,
                "days": days,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "ingest": total.to_dict(),
                "lake_rows": state.rows,
                "partitions": len(state.partitions),
                "quarantined": state.quarantined,
                "catalog": {name: asdict(obj) for name, obj in catalogs.items()},
                "seconds": elapsed,
            }
        )
        return
    lake_summary(lake_uri=uri, as_json=False)
    console.print(
        f"done in {elapsed:.1f} s. Next: `recloop lake summary`, `recloop sim weblogs "
        "--days 7 --out week.jsonl`, `recloop import movielens DIR` (docs/data.md)."
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
