"""`recloop replay movielens`: policies compared week by week through the ingest path.

A small synthetic folder in ML-100K's layout (u.data) where new titles keep arriving and take
the audience: a model frozen after the warm-up cannot know them, a weekly one can. The real
ML-100K run is slow and reads ../shared.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.errors import ImportDataError
from recloop.lake import Lake
from recloop.loop.replay import POLICIES, Replay, ReplayConfig, read_ratings

START = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def _folder(root: Path, weeks: int = 9, users: int = 120, seed: int = 0) -> Path:
    """u.data where the newest titles (out since last week) draw the ratings, by taste group."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, size=users)
    rows = []
    seen: list[set[int]] = [set() for _ in range(users)]
    for week in range(weeks):
        fresh = np.arange(max(0, week - 1) * 30, week * 30 + 30)
        for user in range(users):
            mine = np.array([i for i in fresh if i % 3 == groups[user] and i not in seen[user]])
            weight = 1.0 / (1 + (mine * 7919) % 11)  # a fixed appeal per title
            picks = rng.choice(mine, size=6, replace=False, p=weight / weight.sum())
            seen[user].update(int(i) for i in picks)
            for n, item in enumerate(picks):
                ts = START + week * 7 * 86_400 + int(rng.integers(0, 6)) * 86_400 + n
                rating = 5 if n < 4 else 2
                rows.append(f"{user + 1}\t{item + 1}\t{rating}\t{ts}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "u.data").write_text("\n".join(rows) + "\n")
    return root


def test_weekly_retraining_beats_a_frozen_model_when_new_items_take_over(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ml")
    lake = Lake.from_uri((tmp_path / "lake").as_uri())
    config = ReplayConfig(
        params={"factors": 8, "iterations": 8, "regularization": 0.1},
        warmup_weeks=3,
        last_weeks=4,
    )

    result = Replay(folder, lake, config).run()

    assert [w.week for w in result.weeks] == list(range(3, 9))
    means = result.means()
    assert means["weekly"]["recall@10"] > means["frozen"]["recall@10"] + 0.05
    assert (result.retrains["frozen"], result.retrains["weekly"]) == (1, 6)
    # The new items are unknown to the trigger policy's model: the drift rule retrains it.
    assert result.retrains["on_trigger"] > 1
    assert all(w.metrics[p]["ndcg@10"] >= 0 for w in result.weeks for p in POLICIES)
    # Every rating went through the ingest path into the lake: a view, plus a click if >= 4.
    ratings = [line.split("\t") for line in (folder / "u.data").read_text().splitlines()]
    table, _ = lake.read_events(columns=["event_type"])
    assert table.num_rows == len(ratings) + sum(1 for r in ratings if int(r[2]) >= 4)


def test_the_cli_prints_the_table_writes_the_plot_and_ends_with_the_means(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "ml", weeks=6, users=60)
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app,
        ["replay", "movielens", str(folder), "--out", str(out), "--warmup", "2", "--json"],
        catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    assert (out / "replay-ml-100k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "recall@10 / nDCG@10 per week" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(summary["means"]) == set(POLICIES)
    assert summary["weeks_evaluated"] == 4
    assert {"recall@10", "ndcg@10"} <= set(summary["means"]["weekly"])
    saved = json.loads((out / "replay-ml-100k.json").read_text())
    assert len(saved["weeks"]) == 4


def test_a_folder_without_ratings_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImportDataError, match=r"neither u\.data"):
        read_ratings(tmp_path)
    result = CliRunner().invoke(app, ["replay", "movielens", str(tmp_path)])
    assert result.exit_code == 2
    assert "neither u.data" in result.output


@pytest.mark.slow
def test_on_ml_100k_weekly_retraining_beats_the_frozen_model(
    shared_dir: Path, tmp_path: Path
) -> None:
    folder = shared_dir / "data" / "movielens-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(reason=f"{folder} holds no u.data")

    result = Replay(folder, Lake.from_uri((tmp_path / "lake").as_uri())).run()

    means = result.means(8)
    # The gap is the value of continuous retraining (docs/loop.md reports both numbers).
    assert means["weekly"]["recall@10"] > means["frozen"]["recall@10"]
    assert len(result.weeks) == 27
