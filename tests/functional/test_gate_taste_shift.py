"""`recloop train`'s gate after a change in tastes: a fresh challenger replaces a stale champion.

A seeded world's users shift their tastes and new content appears; the stale champion keeps
serving, and the clicks on its own lists (they carry a rec_id) go to the lake as they would in
production. Counting those
clicks, or scoring the champion without the training rows serving gives it, made every retrain
lose to the champion after a drift (here: recall@10 -11.5% with every click counted); the gate
compares on organic interactions and scores the champion as it serves.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from recloop.events import Event, EventType
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.registry import ModelStatus, registry_from_uri
from recloop.registry.gate import GateConfig
from recloop.sim import World, WorldConfig
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import TrainOptions, train
from recloop.training.runs import RunTracker

START = datetime(2026, 3, 1, tzinfo=UTC)
SHIFT = START + timedelta(days=4)
END = START + timedelta(days=8)
# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
OPTIONS = TrainOptions(
    min_holdout_users=1,
    families=("als",),
    params={"factors": 16, "iterations": 8, "regularization": 0.1},
    holdout_days=1.0,
    validation_days=1.0,
    search_budget=1,
    eval_users=500,
    gate=GateConfig(bootstrap_samples=300),
    holdout_types=("view", "click"),
)


def _champion_traffic(
    world: World, bundle: ModelBundle, version: str, rng: np.random.Generator
) -> list[Event]:
    """The stale champion's lists shown to every user a few times a day after the shift, and
    the clicks the world's (new) tastes give them: all carry the list's rec_id."""
    users = [str(u) for u in bundle.user_ids]
    ids, _ = bundle.model.recommend(bundle.training_history(users), k=10)
    events: list[Event] = []
    for day in range((END - SHIFT).days):
        for n, user in enumerate(users):
            shown = [str(bundle.item_ids[i]) for i in ids[n] if i >= 0]
            for visit in range(4):
                at = SHIFT + timedelta(days=day, hours=2 + 5 * visit, minutes=n % 60)
                rec = f"r{day}-{n}-{visit}"
                events.append(
                    Event(
                        event_id=f"imp-{rec}",
                        event_type=EventType.IMPRESSION,
                        timestamp=at,
                        user_id=user,
                        item_ids=shown,
                        rec_id=rec,
                        model_version=version,
                    )
                )
                for k, item in enumerate(world.choose_clicks(user, shown, at, rng)):
                    events.append(
                        Event(
                            event_id=f"clk-{rec}-{k}",
                            event_type=EventType.CLICK,
                            timestamp=at + timedelta(seconds=5 + k),
                            user_id=user,
                            item_id=item,
                            rec_id=rec,
                            model_version=version,
                        )
                    )
    return events


def test_after_a_taste_shift_a_retrained_challenger_beats_the_stale_champion(
    tmp_path: Path,
) -> None:
    world = World(
        WorldConfig(
            seed=7,
            start=START,
            n_users=200,
            n_items=120,
            n_visitors=0,
            n_bots=0,
            sessions_per_user_day=3.0,
            views_per_session=5.0,
            taste_weight=8.0,
            drift_per_day=0.0,
        )
    )
    lake = Lake.from_uri((tmp_path / "lake").as_uri())
    ingest = Ingestor(lake)
    ingest.ingest_events(world.generate(START, SHIFT).tracker_records(), "before")
    registry = registry_from_uri((tmp_path / "registry").as_uri())
    tracker = RunTracker.for_registry(registry)
    stale = train(replace(OPTIONS, until=SHIFT.isoformat()), lake, registry, tracker)
    assert stale.version is not None and stale.version.status is ModelStatus.APPROVED

    # New tastes and new content (as in the demo): the stale champion cannot know the items.
    world.shift_tastes(SHIFT, strength=0.9)
    world.add_content(60, SHIFT)
    ingest.ingest_events(world.generate(SHIFT, END).tracker_records(), "after")
    champion = ModelBundle.load(registry.download(stale.version.version, tmp_path / "champion"))
    served = _champion_traffic(world, champion, stale.version.version, np.random.default_rng(1))
    assert sum(e.event_type is EventType.CLICK for e in served) > 100
    ingest.ingest_events(served, "served")

    fresh = train(replace(OPTIONS, until=END.isoformat()), lake, registry, tracker)

    assert fresh.decision is not None and fresh.version is not None
    assert fresh.decision.evidence["incumbent"] == f"champion v{stale.version.version}", (
        fresh.decision.reason
    )
    assert fresh.decision.approved, fresh.decision.reason
    assert fresh.version.status is ModelStatus.APPROVED
    current = registry.champion()
    assert current is not None and current.version == fresh.version.version
