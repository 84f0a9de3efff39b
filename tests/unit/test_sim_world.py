"""The synthetic world: determinism, tastes drive clicks, drift and shifts, content, traffic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recloop.errors import NotFoundError
from recloop.events import Event
from recloop.sim import Kind, SimError, World, WorldConfig

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def small(seed: int = 3, **overrides: object) -> World:
    params: dict[str, object] = {"seed": seed, "start": START, "n_users": 300, "n_items": 200}
    params.update(overrides)
    return World(WorldConfig(**params))  # type: ignore[arg-type]


def test_same_seed_same_events_other_seed_other_events() -> None:
    one = small().generate(START, START + timedelta(days=1)).tracker_records()
    two = small().generate(START, START + timedelta(days=1)).tracker_records()
    other = small(seed=4).generate(START, START + timedelta(days=1)).tracker_records()
    assert one == two
    assert len(one) > 1000
    assert [r["event_id"] for r in one] != [r["event_id"] for r in other]


def test_windows_split_a_period_into_the_same_events() -> None:
    world = small()
    whole = world.generate(START, START + timedelta(days=2)).tracker_records()
    cut = START + timedelta(hours=31, minutes=17)
    parts = (
        world.generate(START, cut).tracker_records()
        + world.generate(cut, START + timedelta(days=2)).tracker_records()
    )
    assert parts == whole
    stamps = [r["timestamp"] for r in whole]
    assert stamps == sorted(stamps)
    assert len({r["event_id"] for r in whole}) == len(whole)


def test_tracker_records_are_valid_events_and_stay_in_the_window() -> None:
    world = small()
    lo, hi = START + timedelta(hours=5), START + timedelta(hours=9)
    events = world.generate(lo, hi).events()
    assert events and all(isinstance(e, Event) for e in events)
    assert all(lo <= e.timestamp < hi for e in events)
    kinds = Counter(e.event_type.value for e in events)
    assert kinds["view"] > kinds["click"] > 0
    assert any(e.user_id for e in events) and any(e.visitor_id for e in events)


def test_clicks_follow_latent_taste() -> None:
    world = small()
    at = START + timedelta(days=1)
    available = world.available_item_ids(at)
    rng = np.random.default_rng(0)
    best, random = [], []
    for user in world.user_ids[:100]:
        best.append(world.click_probabilities(user, world.best_items(user, at, 10), at).mean())
        random.append(world.click_probabilities(user, list(rng.choice(available, 10)), at).mean())
    assert np.mean(best) > 3 * np.mean(random)
    # choose_clicks draws each shown item with its probability
    user, shown = world.user_ids[0], world.best_items(world.user_ids[0], at, 5)
    p = world.click_probabilities(user, shown, at)
    hits = Counter(item for _ in range(2000) for item in world.choose_clicks(user, shown, at, rng))
    for item, prob in zip(shown, p, strict=True):
        assert hits[item] / 2000 == pytest.approx(prob, abs=0.05)


def test_views_prefer_items_the_user_likes() -> None:
    world = small()
    records = world.generate(START, START + timedelta(days=3)).tracker_records()
    views = [r for r in records if r["event_type"] == "view" and "user_id" in r]
    at = START + timedelta(days=1)
    viewed = np.mean(
        [world.click_probability(r["user_id"], r["item_id"], at) for r in views[:2000]]
    )
    available = world.available_item_ids(at)
    everything = np.mean(
        [world.click_probabilities(u, available, at).mean() for u in world.user_ids[:100]]
    )
    assert viewed > 2 * everything


def test_tastes_drift_slowly_and_shift_on_demand() -> None:
    world = small()
    user = world.user_ids[7]
    t0, t1 = START + timedelta(days=1), START + timedelta(days=2)
    liked = world.best_items(user, t0, 10)
    before = world.click_probabilities(user, liked, t0).mean()
    drifted = world.click_probabilities(user, liked, t1).mean()
    assert drifted == pytest.approx(before, rel=0.25)  # a day of drift is small
    early = world.generate(START, t1).tracker_records()
    world.shift_tastes(t1, strength=0.9)
    after = np.mean(
        [
            world.click_probabilities(u, world.best_items(u, t0, 10), t1).mean()
            for u in world.user_ids[:100]
        ]
    )
    fresh = np.mean(
        [
            world.click_probabilities(u, world.best_items(u, t1, 10), t1).mean()
            for u in world.user_ids[:100]
        ]
    )
    assert after < 0.6 * fresh
    # history before the shift is unchanged
    assert world.generate(START, t1).tracker_records() == early
    with pytest.raises(SimError):
        world.shift_tastes(t0)


def test_new_content_is_invisible_before_it_is_published() -> None:
    world = small()
    at = START + timedelta(days=1, hours=12)
    new = set(world.add_content(20, at, categories=["music"]))
    assert len(new) == 20 and not new & set(world.available_item_ids(at - timedelta(seconds=1)))
    assert new <= set(world.available_item_ids(at))
    records = world.generate(START, START + timedelta(days=3)).tracker_records()
    seen = [r for r in records if r["item_id"] in new]
    assert seen, "new items are viewed once published"
    assert min(r["timestamp"] for r in seen) >= at.isoformat().replace("+00:00", "")
    table = world.catalog_table()
    rows = {r["item_id"]: r for r in table.to_pylist()}
    assert all(rows[i]["category"] == "music" for i in new)
    with pytest.raises(SimError, match="unknown categories"):
        world.add_content(1, at, categories=["astrology"])


def test_expired_items_are_never_viewed() -> None:
    world = small(lifetime_days=3.0, evergreen_share=0.2)
    traffic = world.generate(START, START + timedelta(days=2))
    human = traffic.take(traffic.kind <= Kind.CLICK)
    ts_s = human.ts_ms // 1000
    assert (world.publish_s[human.item] <= ts_s).all()
    # a view happens before expiry (sessions check availability when they start)
    assert (ts_s - world.expire_s[human.item] < 3600).all()


def test_popularity_is_heavy_tailed_and_bots_hit_hard() -> None:
    world = small(n_users=600, n_items=400)
    traffic = world.generate(START, START + timedelta(days=2))
    views = Counter(traffic.item[traffic.kind == Kind.VIEW].tolist())
    counts = sorted(views.values(), reverse=True)
    top_decile = sum(counts[: len(world.item_ids) // 10])
    assert top_decile > 0.3 * sum(counts)
    per_actor = Counter(traffic.actor.tolist())
    bots = [per_actor[world.n_humans + b] for b in range(world.config.n_bots)]
    humans = [per_actor[a] for a in range(world.n_humans) if a in per_actor]
    assert min(bots) > 10 * np.median(humans)
    kinds = traffic.counts()
    assert kinds["asset"] > 0 and kinds["error"] > 0 and kinds["page"] > 0
    statuses = set(traffic.status.tolist())
    assert {200, 304, 404, 500} <= statuses


def test_unknown_users_and_items_are_named() -> None:
    world = small()
    with pytest.raises(NotFoundError, match="u99999"):
        world.click_probability("u99999", world.item_ids[0], START)
    with pytest.raises(NotFoundError, match="nope"):
        world.click_probability(world.user_ids[0], "nope", START)
    visitor = world.visitor_ids[5]
    assert 0.0 <= world.click_probability(visitor, world.item_ids[0], START) <= 1.0


def test_catalog_and_user_tables_for_the_lake() -> None:
    world = small()
    items = world.catalog_table()
    assert items.num_rows == 200
    assert {"item_id", "title", "category", "categories", "publish_time", "expires_at"} <= set(
        items.column_names
    )
    assert len(set(items.column("item_id").to_pylist())) == 200
    users = world.users_table()
    assert users.column("user_id").to_pylist() == world.user_ids
    assert "taste" not in " ".join(users.column_names)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(SimError):
        WorldConfig(n_users=0)
    with pytest.raises(SimError):
        small().shift_tastes(START + timedelta(days=1), strength=0.0)


def test_session_starts_name_who_visits_and_when() -> None:
    world = small()
    lo, hi = START + timedelta(hours=8), START + timedelta(hours=20)
    traffic = world.generate(lo, hi)
    starts = traffic.session_starts()
    first_views = {}
    for r in traffic.tracker_records():
        if r["event_type"] == "view" and r.get("session_id"):
            first_views.setdefault(r["session_id"], r)
    assert len(starts) == len(first_views) > 50
    for at, who, session in starts:
        record = first_views[session]
        assert who == record.get("user_id", record.get("visitor_id"))
        assert lo <= at < hi
        assert at.isoformat(timespec="milliseconds").replace("+00:00", "Z") == record["timestamp"]
    assert [s[0] for s in starts] == sorted(s[0] for s in starts)
    assert any(who.startswith("v") for _, who, _ in starts)
    # a driver can ask the click model about every visitor
    at, who, _ = starts[0]
    assert 0.0 <= world.click_probability(who, world.item_ids[0], at) <= 1.0
