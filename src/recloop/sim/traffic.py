"""Traffic of the synthetic world, drawn day by day with numpy (no per-event Python loop).

A day: each human actor starts Poisson(rate) sessions at hours drawn from a diurnal profile;
a session views a geometric number of distinct items drawn by the Gumbel top-k trick from
softmax(taste_weight * affinity + popularity) over the items available at that moment; each
view is followed by a click (play/read) with the world's click probability. Around them the
web server also sees the home page, static assets, 404s and 500s, and crawlers that fetch
item pages uniformly and many times a day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from recloop.sim._vocab import EXTERNAL_REFERRERS, STATIC_ASSETS

if TYPE_CHECKING:
    from recloop.events import Event
    from recloop.sim.world import World

DAY_S = 86_400
MAX_VIEWS = 20  # longest session, in item views
# Share of sessions per hour of the day (UTC): quiet nights, a lunch bump, an evening peak.
_DIURNAL = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.2,
        3.0,
        2.8,
        2.6,
        2.8,
        3.4,
        3.2,
        2.7,
        2.6,
        2.8,
        3.2,
        3.8,
        4.4,
        4.8,
        4.4,
        3.2,
        1.8,
    ]
)
_DIURNAL = _DIURNAL / _DIURNAL.sum()


class Kind(IntEnum):
    """What a request is; VIEW, CLICK and BOT item pages reach the JavaScript tracker."""

    VIEW = 0
    CLICK = 1
    PAGE = 2  # home page
    ASSET = 3
    ERROR = 4  # 404 / 500
    BOT = 5


@dataclass
class Traffic:
    """Requests in time order, as parallel columns (one row per web-server hit)."""

    world: World
    ts_ms: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int8]
    actor: npt.NDArray[np.int64]
    item: npt.NDArray[np.int64]  # -1 when the hit is not about an item
    status: npt.NDArray[np.int16]
    nbytes: npt.NDArray[np.int64]
    path: npt.NDArray[np.object_]
    referrer: npt.NDArray[np.object_]
    session_id: npt.NDArray[np.object_]  # None for bots
    event_id: npt.NDArray[np.object_]  # set on tracked rows (human views and clicks)

    def __len__(self) -> int:
        return len(self.ts_ms)

    @property
    def tracked(self) -> npt.NDArray[np.bool_]:
        """Rows a tracker reports: item views and clicks, and crawlers that run its script."""
        return _tracked(self.kind, self.item, self.status)

    def take(self, rows: npt.NDArray[Any]) -> Traffic:
        """A subset of rows (a boolean mask or indices), in the given order."""
        columns = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name != "world"}
        return Traffic(self.world, **columns)

    def counts(self) -> dict[str, int]:
        """Rows per kind, plus tracked events and sessions."""
        out = {k.name.lower(): int((self.kind == k).sum()) for k in Kind}
        out["tracked"] = int(self.tracked.sum())
        out["sessions"] = len(set(self.session_id[self.kind <= Kind.CLICK].tolist()))
        return out

    def session_starts(self) -> list[tuple[datetime, str, str]]:
        """(time, user or visitor id, session id) of each session's first item view here.

        The moments a closed-loop driver asks the service for recommendations on a user's
        behalf; signed-in users and anonymous visitors alike.
        """
        world = self.world
        human = np.flatnonzero(self.kind == Kind.VIEW)
        _, first = np.unique(self.session_id[human].astype(str), return_index=True)
        rows = human[np.sort(first)]
        ids = [*world.user_ids, *world.visitor_ids]
        return [
            (datetime.fromtimestamp(ms / 1000, UTC), ids[actor], str(session))
            for ms, actor, session in zip(
                self.ts_ms[rows].tolist(),
                self.actor[rows].tolist(),
                self.session_id[rows],
                strict=True,
            )
        ]

    def tracker_records(self) -> list[dict[str, Any]]:
        """Tracked rows as tracker JSON objects (recloop.events.Event fields)."""
        from recloop.sim.formats import tracker_records

        return tracker_records(self)

    def events(self) -> list[Event]:
        """Tracked rows as validated Event objects."""
        from recloop.events import Event

        return [Event.model_validate(r) for r in self.tracker_records()]

    @classmethod
    def concat(cls, world: World, parts: list[Traffic]) -> Traffic:
        if not parts:
            return empty_traffic(world)
        columns = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(cls)
            if f.name != "world"
        }
        return cls(world, **columns)


def _tracked(
    kind: npt.NDArray[np.int8], item: npt.NDArray[np.int64], status: npt.NDArray[np.int16]
) -> npt.NDArray[np.bool_]:
    # Headless crawlers execute the tracker too (on pages that exist); ingest drops them by
    # their user agent.
    bot_page = (kind == Kind.BOT) & (item >= 0) & (status == 200)
    return np.asarray((kind <= Kind.CLICK) | bot_page)


def empty_traffic(world: World) -> Traffic:
    i64 = np.zeros(0, dtype=np.int64)
    obj = np.zeros(0, dtype=object)
    return Traffic(
        world, i64, np.zeros(0, np.int8), i64, i64, np.zeros(0, np.int16), i64, obj, obj, obj, obj
    )


def generate_window(world: World, start: datetime, end: datetime) -> Traffic:
    """Traffic in [start, end): whole days are drawn, then cut to the window."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    if hi <= lo:
        return empty_traffic(world)
    # Sessions that start before midnight may spill into the next day: draw the day before too.
    first_day, last_day = lo // 1000 // DAY_S - 1, (hi - 1) // 1000 // DAY_S
    parts = []
    for day in range(first_day, last_day + 1):
        part = _day(world, day)
        keep = (part.ts_ms >= lo) & (part.ts_ms < hi)
        parts.append(part.take(keep))
    merged = Traffic.concat(world, parts)
    return merged.take(np.argsort(merged.ts_ms, kind="stable"))


def _day(world: World, day: int) -> Traffic:
    """Every request of one UTC day (sessions starting that day), time-sorted, with ids."""
    from recloop.sim.world import _TAG_DAY

    rng = world._rng(_TAG_DAY, day + 1_000_000)  # offset keeps the key non-negative
    rows = [_sessions(world, rng, day), _bots(world, rng, day)]
    columns = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    order = np.argsort(columns["ts_ms"], kind="stable")
    columns = {k: v[order] for k, v in columns.items()}
    tracked = _tracked(columns["kind"], columns["item"], columns["status"])
    event_id = np.full(len(order), None, dtype=object)
    # Ids from what happened (time, actor, item, kind), not from a row counter: a day drawn
    # again after add_content() may differ, and must not reuse an id for another event.
    prefix = f"sim{world.config.seed:x}-"
    event_id[tracked] = [
        f"{prefix}{ms:x}-{actor:x}-{item:x}{'c' if kind == Kind.CLICK else 'v'}"
        for ms, actor, item, kind in zip(
            columns["ts_ms"][tracked].tolist(),
            columns["actor"][tracked].tolist(),
            columns["item"][tracked].tolist(),
            columns["kind"][tracked].tolist(),
            strict=True,
        )
    ]
    return Traffic(world, event_id=event_id, **columns)


def _sessions(world: World, rng: np.random.Generator, day: int) -> dict[str, npt.NDArray[Any]]:
    cfg = world.config
    weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    counts = rng.poisson(world.session_rate * (0.85 if weekend else 1.0))
    actors = np.repeat(np.arange(world.n_humans), counts)
    n_sessions = len(actors)
    hours = rng.choice(24, size=n_sessions, p=_DIURNAL)
    start_s = day * DAY_S + hours * 3600 + rng.integers(0, 3600, size=n_sessions)
    n_views = np.clip(rng.geometric(1.0 / cfg.views_per_session, size=n_sessions), 1, MAX_VIEWS)
    picks = _pick_items(world, rng, actors, start_s)  # (S, MAX_VIEWS), -1 where none
    valid = (np.arange(MAX_VIEWS)[None, :] < n_views[:, None]) & (picks >= 0)
    gaps = np.concatenate(
        [np.zeros((n_sessions, 1)), rng.exponential(45.0, size=(n_sessions, MAX_VIEWS - 1)) + 5],
        axis=1,
    )
    view_ms = (start_s[:, None] * 1000 + np.cumsum(gaps, axis=1) * 1000).astype(np.int64)
    s_idx, k_idx = np.nonzero(valid)
    items = picks[s_idx, k_idx]
    v_actor = actors[s_idx]
    v_ms = view_ms[s_idx, k_idx]
    taste = world._tastes_at(v_actor, v_ms // 1000)
    p_click = world._click_curve((taste * world.item_vecs[items]).sum(1))
    clicked = rng.random(len(items)) < p_click
    session_ids = np.array(
        [f"s{cfg.seed:x}-{day}-{k:06d}" for k in range(n_sessions)], dtype=object
    )
    item_paths = np.array([f"/items/{i}" for i in world.item_ids], dtype=object)
    prev = np.where(k_idx > 0, picks[s_idx, np.maximum(k_idx - 1, 0)], -1)
    external = np.array(EXTERNAL_REFERRERS, dtype=object)[
        rng.integers(0, len(EXTERNAL_REFERRERS), size=len(items))
    ]
    base = world.site_url
    view_ref = np.where(prev >= 0, base + item_paths[np.maximum(prev, 0)], external)
    c = clicked
    click_ms = v_ms[c] + rng.integers(2000, 20000, size=int(c.sum()))
    out = {
        "ts_ms": [v_ms, click_ms],
        "kind": [
            np.full(len(items), Kind.VIEW, np.int8),
            np.full(int(c.sum()), Kind.CLICK, np.int8),
        ],
        "actor": [v_actor, v_actor[c]],
        "item": [items, items[c]],
        "status": [np.full(len(items), 200, np.int16), np.full(int(c.sum()), 200, np.int16)],
        "nbytes": [
            rng.integers(8_000, 40_000, size=len(items)),
            rng.integers(500, 3000, size=int(c.sum())),
        ],
        "path": [
            item_paths[items],
            np.array([p + "/play" for p in item_paths[items[c]]], dtype=object),
        ],
        "referrer": [view_ref, base + item_paths[items[c]]],
        "session_id": [session_ids[s_idx], session_ids[s_idx[c]]],
    }
    _web_noise(world, rng, out, actors, start_s, session_ids)
    return {k: np.concatenate(v) for k, v in out.items()}


def _pick_items(
    world: World,
    rng: np.random.Generator,
    actors: npt.NDArray[np.int64],
    start_s: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Up to MAX_VIEWS distinct items per session by taste and popularity (Gumbel top-k)."""
    cfg = world.config
    n_items = len(world.item_ids)
    k = min(MAX_VIEWS, n_items)
    picks = np.full((len(actors), MAX_VIEWS), -1, dtype=np.int64)
    for lo in range(0, len(actors), 2048):
        a, t = actors[lo : lo + 2048], start_s[lo : lo + 2048]
        taste = world._tastes_at(a, t)
        logits = cfg.taste_weight * (taste @ world.item_vecs.T) + world.item_pop[None, :]
        available = (world.publish_s[None, :] <= t[:, None]) & (
            t[:, None] < world.expire_s[None, :]
        )
        keys = np.where(available, logits + rng.gumbel(size=logits.shape), -np.inf)
        top = (
            np.argpartition(-keys, k - 1, axis=1)[:, :k]
            if k < n_items
            else np.tile(np.arange(n_items), (len(a), 1))
        )
        top_keys = np.take_along_axis(keys, top, axis=1)
        order = np.argsort(-top_keys, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_keys = np.take_along_axis(top_keys, order, axis=1)
        picks[lo : lo + len(a), :k] = np.where(np.isfinite(top_keys), top, -1)
    return picks


def _web_noise(
    world: World,
    rng: np.random.Generator,
    out: dict[str, list[npt.NDArray[Any]]],
    actors: npt.NDArray[np.int64],
    start_s: npt.NDArray[np.int64],
    session_ids: npt.NDArray[np.object_],
) -> None:
    """Home page, static assets and error responses around the sessions (web server only)."""
    n = len(actors)
    base = world.site_url
    # Each session loads the assets once, just before its first item page.
    n_assets = rng.integers(2, 5, size=n)
    a_sess = np.repeat(np.arange(n), n_assets)
    a_ms = start_s[a_sess] * 1000 - rng.integers(200, 1500, size=len(a_sess))
    assets = np.array(STATIC_ASSETS, dtype=object)[rng.integers(0, len(STATIC_ASSETS), len(a_sess))]
    a_status = np.where(rng.random(len(a_sess)) < 0.3, 304, 200).astype(np.int16)
    # Some sessions start on the home page; a few hit a dead link (404) or a server error (500).
    home = np.flatnonzero(rng.random(n) < 0.5)
    err = np.flatnonzero(rng.random(n) < 0.06)
    err_status = np.where(rng.random(len(err)) < 0.75, 404, 500).astype(np.int16)
    real_items = rng.integers(0, len(world.item_ids), size=len(err))
    err_path = np.array(
        [
            f"/items/{world.item_ids[i]}" if s == 500 else f"/items/x{world.config.seed:x}{k:07d}"
            for k, (i, s) in enumerate(zip(real_items.tolist(), err_status.tolist(), strict=True))
        ],
        dtype=object,
    )
    groups = [
        (
            a_sess,
            a_ms,
            Kind.ASSET,
            assets,
            a_status,
            np.full(len(a_sess), base + "/", dtype=object),
        ),
        (
            home,
            start_s[home] * 1000 - 1600,
            Kind.PAGE,
            np.full(len(home), "/", dtype=object),
            np.full(len(home), 200, np.int16),
            np.full(len(home), "-", dtype=object),
        ),
        (
            err,
            start_s[err] * 1000 + rng.integers(1000, 600_000, size=len(err)),
            Kind.ERROR,
            err_path,
            err_status,
            np.full(len(err), base + "/", dtype=object),
        ),
    ]
    for sess, ms, kind, path, status, ref in groups:
        m = len(sess)
        out["ts_ms"].append(np.asarray(ms, dtype=np.int64))
        out["kind"].append(np.full(m, kind, np.int8))
        out["actor"].append(actors[sess])
        out["item"].append(np.full(m, -1, np.int64))
        out["status"].append(status)
        out["nbytes"].append(np.where(status == 304, 0, rng.integers(300, 90_000, size=m)))
        out["path"].append(path)
        out["referrer"].append(ref)
        out["session_id"].append(session_ids[sess])


def _bots(world: World, rng: np.random.Generator, day: int) -> dict[str, npt.NDArray[Any]]:
    """Crawlers: many uniform hits on item pages, robots.txt and the sitemap, all day long."""
    cfg = world.config
    hits = rng.poisson(cfg.bot_hits_per_day, size=cfg.n_bots)
    bot = np.repeat(np.arange(cfg.n_bots), hits)
    m = len(bot)
    ts_ms = (day * DAY_S * 1000 + rng.integers(0, DAY_S * 1000, size=m)).astype(np.int64)
    # Crawlers know every page published before the day, expired ones too (those are 404).
    known = np.flatnonzero(world.publish_s <= day * DAY_S)
    if len(known) == 0:
        known = np.zeros(1, np.int64)
        roll = np.ones(m)
    else:
        roll = rng.random(m)
    items = known[rng.integers(0, len(known), size=m)]
    on_item = roll < 0.9
    item_paths = np.array([f"/items/{i}" for i in world.item_ids], dtype=object)
    path = np.where(
        on_item, item_paths[items], np.where(roll < 0.95, "/robots.txt", "/sitemap.xml")
    )
    gone = on_item & (world.expire_s[items] <= ts_ms // 1000)
    return {
        "ts_ms": ts_ms,
        "kind": np.full(m, Kind.BOT, np.int8),
        "actor": world.n_humans + bot,
        "item": np.where(on_item, items, -1),
        "status": np.where(gone, 404, 200).astype(np.int16),
        "nbytes": rng.integers(8_000, 40_000, size=m),
        "path": path.astype(object),
        "referrer": np.full(m, "-", dtype=object),
        "session_id": np.full(m, None, dtype=object),
    }
