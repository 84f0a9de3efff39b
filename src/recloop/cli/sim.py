"""`recloop sim weblogs`: write the synthetic world's traffic as tracker, Logstash or log lines."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import typer

from recloop.cli._common import console, print_json, user_errors
from recloop.errors import RecloopError

if TYPE_CHECKING:
    from recloop.sim import World

sim_app = typer.Typer(help="The synthetic world: generate traffic to ingest.", no_args_is_help=True)


class LineFormat(StrEnum):
    """recloop.sim.Format's values: importing recloop.sim (numpy) for `--help` costs too much."""

    TRACKER = "tracker"
    LOGSTASH = "logstash"
    ACCESSLOG = "accesslog"


class CatalogTarget(StrEnum):
    FILES = "files"
    LAKE = "lake"
    NONE = "none"


def parse_start(text: str | None, days: int) -> datetime:
    """A UTC date or datetime (ISO 8601); None: midnight UTC `days` days ago."""
    from recloop.sim import default_start

    if text is None:
        return default_start(days)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RecloopError(f"--start {text!r} is not an ISO date such as 2024-05-01") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def catalog_paths(out: Path) -> dict[str, Path]:
    """Where `--catalog files` puts the tables: week.jsonl -> week.items.parquet, ..."""
    stem = out.name.split(".")[0] or "weblogs"
    return {name: out.with_name(f"{stem}.{name}.parquet") for name in ("items", "users")}


def _write_catalogs(
    world: World, target: CatalogTarget, out: str, as_of: datetime, lake_uri: str | None
) -> dict[str, str]:
    import pyarrow.parquet as pq

    from recloop.config import get_settings
    from recloop.importers import write_catalog
    from recloop.lake import Lake

    tables = {"items": world.catalog_table(), "users": world.users_table()}
    if target is CatalogTarget.LAKE:
        lake = Lake.from_uri(lake_uri or get_settings().lake_uri)
        label = f"sim{world.config.seed}"
        return {
            n: lake.uri + "/" + write_catalog(lake, n, t, as_of, label).key
            for n, t in tables.items()
        }
    if target is CatalogTarget.FILES and out != "-":
        paths = catalog_paths(Path(out))
        for name, table in tables.items():
            pq.write_table(table, paths[name])
        return {name: str(path) for name, path in paths.items()}
    return {}


@sim_app.command("weblogs")
def weblogs(
    out: str = typer.Option(..., "--out", "-o", help="Output file; '-' is stdout."),
    days: int = typer.Option(1, min=1, help="Days of traffic."),
    fmt: LineFormat = typer.Option(
        LineFormat.TRACKER, "--format", help="tracker, logstash or accesslog."
    ),
    users: int = typer.Option(2000, min=1, help="Signed-in users."),
    items: int = typer.Option(1000, min=1, help="Items in the initial catalog."),
    new_items: int = typer.Option(-1, help="Items published each day (default: items/100)."),
    seed: int = typer.Option(0, min=0, help="Seed: the same seed and start, the same traffic."),
    start: str | None = typer.Option(None, help="First day (UTC); default: DAYS days ago."),
    catalog: CatalogTarget = typer.Option(
        CatalogTarget.FILES,
        help="files: <name>.items/.users.parquet beside --out; lake: into the lake; none.",
    ),
    lake_uri: str | None = typer.Option(
        None, help="Lake for --catalog lake (default: RECLOOP_LAKE_URI)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a summary JSON object last."),
) -> None:
    """Generate DAYS of a seeded world's web traffic (see docs/data.md)."""
    from recloop.sim import Format, World, WorldConfig, write_traffic

    with user_errors():
        if as_json and out == "-":
            raise RecloopError("--json needs --out FILE: stdout carries the events")
        first = parse_start(start, days)
        world = World(WorldConfig.scaled(users, items, seed, first))
        per_day = max(1, items // 100) if new_items < 0 else new_items
        counts: dict[str, int] = {}
        lines = 0
        target: Any = nullcontext(sys.stdout) if out == "-" else _open(Path(out))
        with target as handle:
            for _day, traffic in world.simulate(first, days, per_day):
                lines += write_traffic(traffic, Format(fmt), handle)
                for key, value in traffic.counts().items():
                    counts[key] = counts.get(key, 0) + value
        end = first + timedelta(days=days)
        written = _write_catalogs(world, catalog, out, end, lake_uri)
    summary = {
        "out": out,
        "format": fmt.value,
        "lines": lines,
        "start": first.isoformat(),
        "end": end.isoformat(),
        "seed": seed,
        "users": users,
        "items": len(world.item_ids),
        "counts": counts,
        "catalog": written,
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"{lines:,} {fmt.value} lines, {first:%Y-%m-%d} to {end:%Y-%m-%d} -> {out}")
    console.print(", ".join(f"{k} {v:,}" for k, v in counts.items()))
    for name, where in written.items():
        console.print(f"catalog {name}: {where}")
    if catalog is CatalogTarget.FILES and out == "-":
        console.print("no catalog written (stdout); use --catalog lake to put it in the lake")


def _open(path: Path) -> IO[str]:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise RecloopError(f"cannot write {path}: {exc}") from exc


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
