"""`recloop replay movielens DIR`: retraining policies compared week by week on real data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer
from rich.table import Table

from recloop.cli._common import console, print_json, user_errors

if TYPE_CHECKING:
    from recloop.loop.replay import WeekResult

replay_app = typer.Typer(help="Replay a public dataset through the ingest path, week by week.")


@replay_app.command("movielens")
def movielens(
    folder: Path = typer.Argument(..., help="An ML-100K (u.data) or ML-1M (ratings.dat) folder."),
    out: Path = typer.Option(Path(".recloop/replay"), help="Where the PNG and JSON go."),
    lake_uri: str | None = typer.Option(None, help="Lake to replay into (default: a fresh one)."),
    warmup: int = typer.Option(4, min=1, help="Weeks before the first evaluation (frozen model)."),
    last: int = typer.Option(8, min=1, help="The summary averages over the last N weeks."),
    family: str = typer.Option("als", help="Model family every policy trains."),
    k: int = typer.Option(10, min=1, help="K of recall@K and nDCG@K."),
    as_json: bool = typer.Option(False, "--json", help="Per-policy means as JSON, last line."),
) -> None:
    """Frozen after the warm-up vs retrained weekly vs retrained on a trigger."""
    from recloop.loop.replay import POLICIES, ReplayConfig, plot_replay, replay_movielens

    with user_errors():
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder} is not a folder")
        config = ReplayConfig(family=family, k=k, warmup_weeks=warmup, last_weeks=last)

        def progress(week: WeekResult) -> None:
            recall = {p: week.metrics[p][f"recall@{k}"] for p in POLICIES}
            figures = "  ".join(f"{p} {v:.4f}" for p, v in recall.items())
            console.print(f"week {week.week:3d}: {week.users:4d} users  recall@{k}: {figures}")

        with console.status("replaying week by week"):
            result = replay_movielens(folder, lake_uri, config, progress)
    table = Table(title=f"{result.dataset}: recall@{k} / nDCG@{k} per week")
    table.add_column("week", justify="right")
    table.add_column("users", justify="right")
    for policy in POLICIES:
        table.add_column(policy.replace("_", " "), justify="right")
    table.add_column("retrained")
    for week in result.weeks:
        cells = [
            f"{week.metrics[p][f'recall@{k}']:.4f} / {week.metrics[p][f'ndcg@{k}']:.4f}"
            for p in POLICIES
        ]
        table.add_row(str(week.week), str(week.users), *cells, ", ".join(week.retrained))
    console.print(table)
    means = result.means()
    for policy in POLICIES:
        m = means[policy]
        console.print(
            f"last {min(last, len(result.weeks))} weeks, {policy}: "
            f"recall@{k} {m[f'recall@{k}']:.4f}, nDCG@{k} {m[f'ndcg@{k}']:.4f} "
            f"({result.retrains[policy]} trainings)"
        )
    out.mkdir(parents=True, exist_ok=True)
    png = plot_replay(result, out / f"replay-{result.dataset}.png")
    summary = {**result.summary(), "plot": str(png)}
    (out / f"replay-{result.dataset}.json").write_bytes(
        orjson.dumps(
            {**summary, "weeks": [w.to_dict() for w in result.weeks]}, option=orjson.OPT_INDENT_2
        )
    )
    console.print(f"plot: {png}")
    if as_json:
        print_json(summary)


def register(app: typer.Typer) -> None:
    app.add_typer(replay_app, name="replay")
