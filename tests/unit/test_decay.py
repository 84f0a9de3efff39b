"""The champion's decay curve on synthetic data whose answer is known."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.config import get_settings
from recloop.events import EVENT_SCHEMA, conform
from recloop.lake import Lake
from recloop.monitoring.decay import decay_curve
from recloop.monitoring.errors import MonitorError
from recloop.registry import registry_from_uri
from recloop.training.bundle import BundleMeta, ModelBundle
from recloop.training.dataset import DatasetConfig, from_table
from training_fixtures import CooccurrenceModel, register_test_family

N_USERS, N_ITEMS, GROUPS = 60, 90, 3
SHIFT_DAY = 7  # from this day on, group g clicks the items of group g + 1


def _events(days: range, seed: int = 0, rec_share: float = 0.0) -> pa.Table:
    """Users of group g click items of group g (of g + 1 from SHIFT_DAY), uniformly within."""
    rng = np.random.default_rng(seed)
    per_day, per_group = 2 * N_USERS, N_ITEMS // GROUPS
    day = np.repeat(np.asarray(list(days)), per_day)
    n = len(day)
    users = rng.integers(0, N_USERS, n)
    group = (users % GROUPS + (day >= SHIFT_DAY)) % GROUPS
    items = group * per_group + rng.integers(0, per_group, n)
    t0 = np.datetime64("2026-01-01T00:00:00", "ms")
    ms = day * 86_400_000 + rng.integers(0, 86_400_000, n)
    table = pa.table(
        {
            "event_id": [f"e{seed}-{i}" for i in range(n)],
            "event_type": ["click"] * n,
            "timestamp": pa.array(t0 + ms.astype("timedelta64[ms]"), pa.timestamp("ms", tz="UTC")),
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{j:03d}" for j in items],
            "rec_id": [f"r{i}" if rng.random() < rec_share else None for i in range(n)],
            "source": ["test"] * n,
            "schema_version": pa.array(np.full(n, 2, np.int16)),
        }
    )
    return conform(table).cast(EVENT_SCHEMA)


def _bundle(train: pa.Table) -> ModelBundle:
    data = from_table(train, DatasetConfig())
    model = CooccurrenceModel().fit(data.matrix)
    return ModelBundle(
        model=model,
        item_ids=data.item_ids,
        user_ids=data.user_ids,
        item_popularity=np.asarray((data.matrix > 0).sum(axis=0), np.float32).ravel(),
        meta=BundleMeta("test_cooccurrence", {}, None, None, "0" * 64, data.nnz),
        history=data.matrix,
    )


@pytest.fixture
def world(lake_uri: str) -> tuple[Lake, ModelBundle]:
    """Days 0-4 (Jan 1-5) train the model; days 5-9 land in the lake; tastes shift on day 7."""
    lake = Lake.from_uri(lake_uri)
    lake.write_events(_events(range(5, 10), seed=1), batch_id="days-5-9")
    return lake, _bundle(_events(range(0, 5), seed=0))


def test_recall_drops_after_the_tastes_shift(world: tuple[Lake, ModelBundle]) -> None:
    lake, bundle = world
    # Day n of the world is 2026-01-(n + 1): Jan 6-7 precede the shift, Jan 8-10 follow it.
    curve = decay_curve(lake, bundle, "2026-01-06", "2026-01-12", k=5)
    assert [m.day for m in curve] == [date(2026, 1, d) for d in range(6, 12)]
    before = [m.recall for m in curve[:2]]
    after = [m.recall for m in curve[2:5]]
    assert all(r is not None for r in before + after)
    assert min(before) > 2 * max(after)  # type: ignore[type-var,operator]
    assert all(m.users > 0 for m in curve[:5])
    ndcg_before = [m.ndcg for m in curve[:2]]
    assert min(ndcg_before) > max(m.ndcg for m in curve[2:5])  # type: ignore[type-var]
    # Jan 11 has no data at all: no users, no metric, no crash.
    assert curve[5].users == 0 and curve[5].recall is None and curve[5].ndcg is None
    assert curve[5].to_dict()["day"] == "2026-01-11"


def test_clicks_a_recommendation_led_to_are_left_out(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    lake.write_events(_events(range(5, 6), seed=1, rec_share=1.0), batch_id="recs")
    bundle = _bundle(_events(range(0, 5), seed=0))
    (day,) = decay_curve(lake, bundle, "2026-01-06", "2026-01-07")
    assert day.users == 0 and day.recall is None


def test_only_users_the_bundle_knows_are_scored(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    events: Any = _events(range(5, 6), seed=1)
    lake.write_events(events, batch_id="day-5")
    bundle = _bundle(_events(range(0, 5), seed=0))
    (day,) = decay_curve(lake, bundle, "2026-01-06", "2026-01-07")
    clicked = set(events.column("user_id").to_pylist())
    assert 0 < day.users <= len(clicked & set(bundle.user_ids.tolist()))


def test_bad_ranges_are_refused(world: tuple[Lake, ModelBundle]) -> None:
    lake, bundle = world
    with pytest.raises(MonitorError):
        decay_curve(lake, bundle, "2026-01-08", "2026-01-06")
    with pytest.raises(MonitorError):
        decay_curve(lake, bundle, "yesterday", "2026-01-06")


def test_cli_scores_the_champion_day_by_day(
    world: tuple[Lake, ModelBundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_family(monkeypatch)
    lake, bundle = world
    registry = registry_from_uri(get_settings().registry_uri)
    version = registry.register(bundle.save(tmp_path / "bundle"), {"recall@10": 0.1}, "run-1")
    runner = CliRunner()
    argv = ["monitor", "decay", "--days", "6", "--end", "2026-01-12", "--k", "5"]
    refused = runner.invoke(app, [*argv, "--lake-uri", lake.uri])
    assert refused.exit_code == 2 and "no champion" in refused.output
    registry.approve(version.version, "test")
    result = runner.invoke(app, [*argv, "--lake-uri", lake.uri, "--json"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert out["model"] == version.version and out["k"] == 5
    expected = decay_curve(lake, bundle, "2026-01-06", "2026-01-12", k=5)
    assert out["days"] == [m.to_dict() for m in expected]
    # Without --end the range ends after the newest data day (Jan 10), so Jan 11 is not scored.
    recent = ["monitor", "decay", "--days", "2", "--lake-uri", lake.uri]
    newest = runner.invoke(app, [*recent, "--json"])
    assert newest.exit_code == 0, newest.output
    days = orjson.loads(newest.stdout.strip().splitlines()[-1])["days"]
    assert [d["day"] for d in days] == ["2026-01-09", "2026-01-10"]
    table = runner.invoke(app, recent)
    assert table.exit_code == 0, table.output
    assert "2026-01-10" in table.output and "recall@10" in table.output
