"""The synthetic world: a catalog, users with latent tastes that drift, and their click model.

Everything is seeded: the same `WorldConfig`, the same calls to `add_content` / `shift_tastes`
and the same time window give the same items, users and events.

The model. Categories and items live in one latent space of `n_factors` dimensions. Each
category has a unit vector; an item is its category's vector plus a secondary category and
noise. Each actor (signed-in user or anonymous visitor) has a unit taste vector made from a few
favourite categories. Tastes drift slowly: between two explicit shifts an actor's taste rotates
away from its base towards a private direction at `drift_per_day` radians a day.
`shift_tastes()` starts a new segment with new bases (a change of interests the demo uses).
Affinity is the cosine of taste and item; views follow affinity plus a power-law popularity
bias, and a user clicks an item with `click_probability`, a logistic function of affinity.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from recloop.errors import NotFoundError, RecloopError
from recloop.sim._vocab import (
    BOT_AGENTS,
    BROWSER_WEIGHTS,
    BROWSERS,
    DEFAULT_CATEGORIES,
    TITLE_ADJECTIVES,
    TITLE_WORDS,
)

if TYPE_CHECKING:
    from recloop.sim.traffic import Traffic

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400
NEVER = np.iinfo(np.int64).max  # expiry of evergreen items

# Sub-stream tags: every random draw comes from a generator keyed by (seed, tag, ...).
_TAG_CATALOG, _TAG_USERS, _TAG_CONTENT, _TAG_SHIFT, _TAG_DAY = 1, 2, 3, 4, 5


class SimError(RecloopError):
    """The synthetic world was asked for something it cannot do."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _epoch(value: datetime) -> int:
    return int(_utc(value).timestamp())


def default_start(days: int = 7) -> datetime:
    """Midnight UTC `days` days ago: recent enough for the ingest age limits."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def _unit(x: FloatArray) -> FloatArray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float64)


@dataclass(frozen=True)
class WorldConfig:
    """Size and behaviour of a synthetic world; defaults give ~11k tracked events a day."""

    seed: int = 0
    start: datetime = field(default_factory=default_start)
    n_users: int = 2000
    n_items: int = 1000
    n_visitors: int = 1000  # anonymous visitors (cookie, no login)
    n_bots: int = 6
    n_factors: int = 16
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    sessions_per_user_day: float = 1.0
    sessions_per_visitor_day: float = 0.3
    views_per_session: float = 4.0
    bot_hits_per_day: int = 300  # per bot
    taste_weight: float = 5.0  # how strongly views follow taste versus popularity
    popularity_exponent: float = 1.0  # Zipf exponent of the popularity bias
    drift_per_day: float = 0.01  # radians a day
    max_ctr: float = 0.6
    ctr_slope: float = 8.0
    ctr_midpoint: float = 0.5
    catalog_age_days: int = 120  # the initial catalog was published over this many days
    evergreen_share: float = 0.4  # items that never expire
    lifetime_days: float = 60.0  # median lifetime of the others

    @classmethod
    def scaled(
        cls, users: int, items: int, seed: int = 0, start: datetime | None = None
    ) -> WorldConfig:
        """A world of `users` and `items` with visitors and crawlers in proportion."""
        return cls(
            seed=seed,
            start=start if start is not None else default_start(),
            n_users=users,
            n_items=items,
            n_visitors=users // 2,
            n_bots=max(1, users // 300),
        )

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.n_items < 1:
            raise SimError("a world needs at least one user and one item")
        if min(self.n_visitors, self.n_bots, self.n_factors - 1) < 0 or not self.categories:
            raise SimError("n_visitors and n_bots must be >= 0, n_factors >= 1, categories given")
        object.__setattr__(self, "start", _utc(self.start))


@dataclass
class _Segment:
    """Taste bases in force from `t0` (epoch seconds) until the next shift."""

    t0: int
    base: FloatArray  # (actors, factors), unit rows
    direction: FloatArray  # (actors, factors), unit rows orthogonal to base


class World:
    """A seeded synthetic world: catalog, actors, tastes, traffic and the click model."""

    site_url = "https://www.recloop.example"  # referrers inside the site

    def __init__(self, config: WorldConfig | None = None, **overrides: object) -> None:
        if config is None:
            config = WorldConfig(**overrides)  # type: ignore[arg-type]
        elif overrides:
            raise SimError("pass a WorldConfig or keyword overrides, not both")
        self.config = config
        self.start = config.start
        self._cat_vecs = _unit(
            self._rng(_TAG_CATALOG, 0).normal(size=(len(config.categories), config.n_factors))
        )
        self.item_ids: list[str] = []
        self.titles: list[str] = []
        self.item_vecs = np.zeros((0, config.n_factors))
        self.item_primary = np.zeros(0, dtype=np.int64)
        self.item_secondary = np.zeros(0, dtype=np.int64)  # -1: none
        self.item_pop = np.zeros(0)  # log popularity bias
        self.publish_s = np.zeros(0, dtype=np.int64)
        self.expire_s = np.zeros(0, dtype=np.int64)
        self._item_index: dict[str, int] = {}
        self._make_catalog()
        self._make_actors()
        self.shifts: list[datetime] = []

    # ---- construction --------------------------------------------------------------------

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, *key])

    def _new_items(
        self,
        rng: np.random.Generator,
        n: int,
        publish_s: IntArray,
        categories: list[int] | None = None,
    ) -> list[str]:
        cfg = self.config
        n_cat = len(cfg.categories)
        # Category sizes follow a mild power law: some sections are much bigger than others.
        cat_weights = 1.0 / np.arange(1, n_cat + 1) ** 0.7
        pool = np.arange(n_cat) if categories is None else np.asarray(categories)
        weights = cat_weights[pool] / cat_weights[pool].sum()
        primary = rng.choice(pool, size=n, p=weights)
        secondary = np.where(rng.random(n) < 0.3, rng.integers(0, n_cat, size=n), -1)
        secondary = np.where(secondary == primary, -1, secondary)
        vecs = self._cat_vecs[primary] + 0.45 * rng.normal(size=(n, cfg.n_factors)) / np.sqrt(
            cfg.n_factors / 4
        )
        has_second = secondary >= 0
        vecs[has_second] += 0.5 * self._cat_vecs[secondary[has_second]]
        # Popularity: a random Zipf rank, so a few items draw most of the traffic.
        ranks = rng.integers(1, max(cfg.n_items, n) + 1, size=n)
        pop = -cfg.popularity_exponent * np.log(ranks)
        lifetime = np.exp(rng.normal(np.log(cfg.lifetime_days), 0.6, size=n)) * DAY_S
        evergreen = rng.random(n) < cfg.evergreen_share
        expire = np.where(evergreen, NEVER, publish_s + lifetime.astype(np.int64))
        first = len(self.item_ids)
        ids = [f"i{first + k:05d}" for k in range(n)]
        adjectives = rng.integers(0, len(TITLE_ADJECTIVES), size=n)
        nouns = rng.integers(0, 8, size=n)
        for k in range(n):
            noun = TITLE_WORDS.get(cfg.categories[primary[k]], ("Story",) * 8)[nouns[k] % 8]
            self.titles.append(f"The {TITLE_ADJECTIVES[adjectives[k]]} {noun} #{first + k}")
        self.item_ids.extend(ids)
        self._item_index.update({item: first + k for k, item in enumerate(ids)})
        self.item_vecs = np.vstack([self.item_vecs, _unit(vecs)])
        self.item_primary = np.concatenate([self.item_primary, primary])
        self.item_secondary = np.concatenate([self.item_secondary, secondary])
        self.item_pop = np.concatenate([self.item_pop, pop])
        self.publish_s = np.concatenate([self.publish_s, publish_s])
        self.expire_s = np.concatenate([self.expire_s, expire])
        return ids

    def _make_catalog(self) -> None:
        cfg = self.config
        rng = self._rng(_TAG_CATALOG, 1)
        t0 = _epoch(cfg.start)
        age = rng.random(cfg.n_items) * cfg.catalog_age_days * DAY_S
        self._new_items(rng, cfg.n_items, (t0 - age).astype(np.int64))

    def _random_tastes(self, rng: np.random.Generator, n: int) -> FloatArray:
        """Unit taste vectors, each a mix of one to three favourite categories plus noise."""
        cfg = self.config
        n_cat = len(cfg.categories)
        n_fav = rng.integers(1, 4, size=n)
        weights = np.zeros((n, n_cat))
        for k in range(3):
            chosen = rng.integers(0, n_cat, size=n)
            w = rng.gamma(2.0, size=n) * (k < n_fav)
            weights[np.arange(n), chosen] += w
        tastes = weights @ self._cat_vecs / np.maximum(weights.sum(1, keepdims=True), 1e-9)
        tastes += 0.25 * rng.normal(size=(n, cfg.n_factors)) / np.sqrt(cfg.n_factors / 4)
        return _unit(tastes)

    def _make_actors(self) -> None:
        cfg = self.config
        rng = self._rng(_TAG_USERS, 0)
        n_human = cfg.n_users + cfg.n_visitors
        self.user_ids = [f"u{k:05d}" for k in range(cfg.n_users)]
        self._user_index = {user: k for k, user in enumerate(self.user_ids)}
        self.visitor_ids = [f"v{cfg.seed:x}{k:06x}" for k in range(cfg.n_visitors)]
        self.n_humans = n_human
        self.bot_ids = [f"b{cfg.seed:x}{k:05x}" for k in range(cfg.n_bots)]
        base = self._random_tastes(rng, n_human)
        self._segments = [_Segment(-(2**62), base, self._directions(rng, base))]
        rates = np.exp(rng.normal(-0.5, 1.0, size=n_human))  # lognormal: mean 1
        rates[: cfg.n_users] *= cfg.sessions_per_user_day
        rates[cfg.n_users :] *= cfg.sessions_per_visitor_day
        self.session_rate = rates
        # Network identity: a stable IP and browser per human, a crawler agent per bot.
        n_actors = n_human + cfg.n_bots
        ips = rng.integers(1, 2**32 - 1, size=n_actors, dtype=np.int64)
        self.actor_ip = [
            f"{(i >> 24) & 255}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in ips
        ]
        browser = rng.choice(
            len(BROWSERS), size=n_human, p=np.asarray(BROWSER_WEIGHTS) / sum(BROWSER_WEIGHTS)
        )
        self.actor_agent = [BROWSERS[b][0] for b in browser] + [
            BOT_AGENTS[k % len(BOT_AGENTS)] for k in range(cfg.n_bots)
        ]
        self.actor_device = [BROWSERS[b][1] for b in browser] + ["bot"] * cfg.n_bots
        self.user_country = rng.choice(
            ["DE", "FR", "GB", "US", "ES", "IT", "NL", "PL"], size=cfg.n_users
        )
        self.user_age_group = rng.choice(
            ["18-24", "25-34", "35-44", "45-54", "55+"], size=cfg.n_users
        )
        self.user_signup_s = _epoch(cfg.start) - (rng.random(cfg.n_users) * 730 * DAY_S).astype(
            np.int64
        )

    def _directions(self, rng: np.random.Generator, base: FloatArray) -> FloatArray:
        raw = rng.normal(size=base.shape)
        raw -= (raw * base).sum(1, keepdims=True) * base
        return _unit(raw)

    # ---- changing the world --------------------------------------------------------------

    def add_content(self, n: int, at: datetime, categories: list[str] | None = None) -> list[str]:
        """Publish `n` new items at `at` (optionally only in `categories`); returns their ids."""
        if n < 1:
            raise SimError("add_content needs n >= 1")
        cats = None
        if categories is not None:
            unknown = sorted(set(categories) - set(self.config.categories))
            if unknown:
                raise SimError(
                    f"unknown categories {unknown}; known: {list(self.config.categories)}"
                )
            cats = [self.config.categories.index(c) for c in categories]
        rng = self._rng(_TAG_CONTENT, len(self.item_ids))
        return self._new_items(rng, n, np.full(n, _epoch(at), dtype=np.int64), cats)

    def shift_tastes(self, at: datetime, strength: float = 0.8) -> None:
        """From `at` on, every actor's taste moves `strength` of the way to new interests.

        Shifts must come in time order; events generated for times after `at` follow the new
        tastes, earlier ones are unchanged.
        """
        if not 0.0 < strength <= 1.0:
            raise SimError("strength must be in (0, 1]")
        t0 = _epoch(at)
        if t0 <= self._segments[-1].t0:
            raise SimError("taste shifts must come in time order")
        rng = self._rng(_TAG_SHIFT, len(self._segments))
        old = self._tastes_at(np.arange(self.n_humans), np.full(self.n_humans, t0))
        new = self._random_tastes(rng, self.n_humans)
        base = _unit((1.0 - strength) * old + strength * new)
        self._segments.append(_Segment(t0, base, self._directions(rng, base)))
        self.shifts.append(_utc(at))

    # ---- tastes and clicks ---------------------------------------------------------------

    def _tastes_at(self, actors: IntArray, times_s: IntArray) -> FloatArray:
        """Unit taste vectors of `actors` at `times_s` (epoch seconds), elementwise."""
        starts = np.array([s.t0 for s in self._segments])
        seg = np.searchsorted(starts, times_s, side="right") - 1
        out = np.empty((len(actors), self.config.n_factors))
        for k in np.unique(seg):
            rows = seg == k
            s = self._segments[int(k)]
            since = np.maximum(times_s[rows] - max(s.t0, _epoch(self.start)), 0) / DAY_S
            angle = (self.config.drift_per_day * since)[:, None]
            a = actors[rows]
            out[rows] = np.cos(angle) * s.base[a] + np.sin(angle) * s.direction[a]
        return out

    def _click_curve(self, affinity: FloatArray) -> FloatArray:
        cfg = self.config
        z = cfg.ctr_slope * (affinity - cfg.ctr_midpoint)
        return np.asarray(cfg.max_ctr / (1.0 + np.exp(-z)), dtype=np.float64)

    def _available(self, items: IntArray, times_s: IntArray) -> npt.NDArray[np.bool_]:
        return (self.publish_s[items] <= times_s) & (times_s < self.expire_s[items])

    def user_index(self, user_id: str) -> int:
        """The actor index of a signed-in user or an anonymous visitor id."""
        if user_id in self._user_index:
            return self._user_index[user_id]
        if user_id.startswith(f"v{self.config.seed:x}"):
            try:
                k = int(user_id[len(f"v{self.config.seed:x}") :], 16)
            except ValueError:
                k = -1
            if 0 <= k < self.config.n_visitors and self.visitor_ids[k] == user_id:
                return self.config.n_users + k
        raise NotFoundError(f"no user {user_id!r} in this world")

    def item_index(self, item_id: str) -> int:
        try:
            return self._item_index[item_id]
        except KeyError:
            raise NotFoundError(f"no item {item_id!r} in this world") from None

    def click_probabilities(self, user_id: str, item_ids: list[str], at: datetime) -> FloatArray:
        """P(click) for each item if shown to `user_id` at `at`; 0 for unavailable items."""
        actor = self.user_index(user_id)
        items = np.array([self.item_index(i) for i in item_ids], dtype=np.int64)
        t = np.full(1, _epoch(at), dtype=np.int64)
        taste = self._tastes_at(np.array([actor]), t)[0]
        p = self._click_curve(self.item_vecs[items] @ taste)
        return np.where(self._available(items, np.full(len(items), t[0])), p, 0.0)

    def click_probability(self, user_id: str, item_id: str, at: datetime) -> float:
        """P(user clicks item | it is shown to them at `at`), from their latent taste then."""
        return float(self.click_probabilities(user_id, [item_id], at)[0])

    def choose_clicks(
        self,
        user_id: str,
        shown_item_ids: list[str],
        at: datetime,
        rng: np.random.Generator,
    ) -> list[str]:
        """The shown items this user clicks, each independently with its click probability."""
        if not shown_item_ids:
            return []
        p = self.click_probabilities(user_id, shown_item_ids, at)
        hits = rng.random(len(p)) < p
        return [item for item, hit in zip(shown_item_ids, hits, strict=True) if hit]

    def best_items(self, user_id: str, at: datetime, k: int = 10) -> list[str]:
        """The k available items this user would click most: an oracle for tests and demos."""
        actor = self.user_index(user_id)
        t = _epoch(at)
        taste = self._tastes_at(np.array([actor]), np.array([t]))[0]
        scores = self.item_vecs @ taste
        scores[
            ~self._available(np.arange(len(self.item_ids)), np.full(len(self.item_ids), t))
        ] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.item_ids[i] for i in top if np.isfinite(scores[i])]

    # ---- traffic and tables --------------------------------------------------------------

    def generate(self, start: datetime, end: datetime) -> Traffic:
        """Every request in [start, end): humans' views and clicks, assets, errors and bots.

        Traffic is drawn day by day from a generator keyed by the day, then cut to the window,
        so any split of a period into windows gives the same events.
        """
        from recloop.sim.traffic import generate_window

        return generate_window(self, _utc(start), _utc(end))

    def simulate(
        self, start: datetime, days: int, new_items_per_day: int = 0
    ) -> Iterator[tuple[datetime, Traffic]]:
        """Day by day from `start`: publish the day's new items at 06:00, then its traffic."""
        first = _utc(start)
        for d in range(days):
            day = first + timedelta(days=d)
            if new_items_per_day > 0:
                self.add_content(new_items_per_day, day + timedelta(hours=6))
            yield day, self.generate(day, day + timedelta(days=1))

    def available_item_ids(self, at: datetime) -> list[str]:
        """Items published and not expired at `at`."""
        t = _epoch(at)
        mask = self._available(np.arange(len(self.item_ids)), np.full(len(self.item_ids), t))
        return [self.item_ids[i] for i in np.flatnonzero(mask)]

    def catalog_table(self) -> pa.Table:
        """Content metadata for `lake.write_catalog("items", ...)`."""
        cats = self.config.categories
        categories = [
            [cats[p]] if s < 0 else [cats[p], cats[s]]
            for p, s in zip(self.item_primary.tolist(), self.item_secondary.tolist(), strict=True)
        ]
        ms = self.publish_s * 1000
        expires = np.where(self.expire_s == NEVER, 0, self.expire_s) * 1000
        return pa.table(
            {
                "item_id": pa.array(self.item_ids, pa.string()),
                "title": pa.array(self.titles, pa.string()),
                "category": pa.array([c[0] for c in categories], pa.string()),
                "categories": pa.array(categories, pa.list_(pa.string())),
                "publish_time": pa.array(ms, pa.timestamp("ms", tz="UTC")),
                "expires_at": pa.array(
                    expires, pa.timestamp("ms", tz="UTC"), mask=self.expire_s == NEVER
                ),
                "popularity": pa.array(np.exp(self.item_pop), pa.float64()),
            }
        )

    def users_table(self) -> pa.Table:
        """User profiles for `lake.write_catalog("users", ...)`; tastes stay latent."""
        return pa.table(
            {
                "user_id": pa.array(self.user_ids, pa.string()),
                "signup_time": pa.array(self.user_signup_s * 1000, pa.timestamp("ms", tz="UTC")),
                "country": pa.array(self.user_country.tolist(), pa.string()),
                "age_group": pa.array(self.user_age_group.tolist(), pa.string()),
                "device": pa.array(self.actor_device[: self.config.n_users], pa.string()),
            }
        )
