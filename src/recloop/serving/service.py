"""The request pipeline: history -> user vector -> candidates -> scores -> rules -> top k.

Every backend call goes through a Guard (timeout + circuit breaker). A failed feature store or
candidate source never fails the answer: a feature store outage degrades to the loaded model's
popularity, a candidate source outage to the model's own lists (neighbour lists, popularity);
the answer says `degraded: true` and the metric counts the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from recloop.events import Event
from recloop.serving.candidates.base import (
    CandidateQuery,
    Candidates,
    CandidateSource,
    Origin,
    Placement,
)
from recloop.serving.candidates.inprocess import InProcessCandidates
from recloop.serving.candidates.ivf import top_indices
from recloop.serving.errors import BackendError, ModelNotReadyError, SinkFullError
from recloop.serving.features.base import FeatureStore, HistoryEntry, ItemFeatures
from recloop.serving.features.cache import ItemCache
from recloop.serving.hotswap import ModelHolder
from recloop.serving.metrics import ServingMetrics
from recloop.serving.model import HistoryRow, ServedModel
from recloop.serving.ranking import Ranked, RankingRules, Scored, choose, rank, reason
from recloop.serving.resilience import Guard
from recloop.serving.schemas import Source
from recloop.serving.sinks import EventSink, Impression

log = logging.getLogger(__name__)
T = TypeVar("T")
_ORIGINS = {int(o): o for o in Origin}

HISTORY_LIMIT = 50
# A backend outage degrades every request: one warning per backend this often, not one per
# request (thousands of lines a second per task); recloop_degraded_responses_total counts all.
DEGRADED_LOG_EVERY_S = 10.0
N_CANDIDATES = 300
# Metadata is fetched for this many of the best-scored candidates per requested item.
_META_FACTOR = 4
_FRESH_ITEMS = 50


@dataclass(slots=True)  # per request: frozen dataclasses cost twice as much to build
class Recommendation:
    """What GET /recommendations returns, before serialisation."""

    rec_id: str
    user_id: str
    model_version: str
    items: list[Ranked]
    degraded: bool
    source: Source
    degraded_reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class _Pool:
    """Scored candidates as parallel arrays of model indices, best-scored first."""

    items: np.ndarray  # int64 item indices
    scores: np.ndarray
    origin: np.ndarray  # int8 Origin
    anchor: np.ndarray  # int64 history item behind a neighbour, -1 when none


_NONE = np.empty(0, dtype=np.int64)


@dataclass(slots=True)
class _Context:
    model: ServedModel
    reasons: list[str] = field(default_factory=list)


class RecommendationService:
    """Answers recommendation and similar-item requests for the model the holder serves."""

    def __init__(
        self,
        holder: ModelHolder,
        features: FeatureStore,
        candidates: CandidateSource,
        sink: EventSink,
        metrics: ServingMetrics,
        features_guard: Guard,
        candidates_guard: Guard,
        history_guard: Guard | None = None,
        rules: RankingRules = RankingRules(),
    ) -> None:
        self.holder = holder
        self.features = features
        self.candidates = candidates
        self.sink = sink
        self.metrics = metrics
        self.features_guard = features_guard
        self.candidates_guard = candidates_guard
        # History writes (POST /events) get their own deadline and breaker: a slow write path
        # must not open the breaker that recommendations read through, nor the reverse.
        self.history_guard = history_guard or Guard(
            "history", features_guard.timeout_s, features_guard.blocking
        )
        self.rules = rules
        self.item_cache = ItemCache()
        # The model's own lists answer when the configured source cannot (down, not published
        # yet, or a family without vectors to index); an in-process source is its own.
        self.own_lists: CandidateSource = (
            candidates if isinstance(candidates, InProcessCandidates) else InProcessCandidates()
        )
        # Labelled children looked up once: labels() takes a lock and a dict lookup (~2 us).
        self._impressions_queued = metrics.impressions.labels("queued")
        self._impressions_dropped = metrics.impressions.labels("dropped")
        self._degraded_logged_at: dict[str, float] = {}  # backend -> monotonic time of its line

    def model(self, actor_id: str | None = None) -> ServedModel:
        """The champion, or for an actor the model of their arm (see hotswap.Holdback)."""
        model = self.holder.current if actor_id is None else self.holder.for_actor(actor_id)
        if model is None:
            raise ModelNotReadyError("no model is loaded yet (nothing approved in the registry?)")
        return model

    # ---- GET /recommendations ---------------------------------------------------------------

    async def recommend(
        self,
        actor_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        category: str | None = None,
        signed_in: bool = True,
    ) -> Recommendation:
        """The top k for an actor; unknown and anonymous actors get a cold-start answer."""
        # This request finishes on this model, whatever swaps; the actor's arm during a guard
        # window (the impression carries the version that answered).
        ctx = _Context(self.model(actor_id))
        model = ctx.model
        history = await self._guarded(ctx, self.features_guard, "features", self._history, actor_id)
        now = datetime.now(UTC)
        source: Source = "popularity_fallback"
        seen = _NONE
        if history is None:
            # Without the feature store, a user the model was trained on is answered from the
            # model's own copy of their history (degraded: recent clicks are missing); anyone
            # else from the model's popularity.
            row = model.history_parts([], actor_id if signed_in else None)
            if row.nnz == 0:
                pool = self._popular_pool(model, _NONE)
            else:
                seen = np.asarray(row.indices, dtype=np.int64)  # sorted, distinct
                pool, source = await self._personalised(ctx, [], row, k, exclude_seen, category)
        else:
            row = model.history_parts(history, actor_id if signed_in else None)
            seen = np.asarray(row.indices, dtype=np.int64)  # sorted, distinct
            if row.nnz == 0:
                items = await self._cold_answer(ctx, history, k, exclude_seen, category, now)
                return self._answer(ctx, actor_id, items, "cold_start", signed_in)
            pool, source = await self._personalised(ctx, history, row, k, exclude_seen, category)
        if not exclude_seen:
            seen = _NONE
        items, picked = await self._rank_pool(
            ctx, pool, max(k * _META_FACTOR, 40), k, now, self.rules, seen, category
        )
        if len(items) < k:  # rules left too few: top up from popularity
            extra = self._popular_pool(model, np.concatenate([picked, seen]))
            more, _ = await self._rank_pool(
                ctx, extra, k * _META_FACTOR, k - len(items), now, self.rules, _NONE, None
            )
            items += more
        return self._answer(ctx, actor_id, items[:k], source, signed_in)

    def _answer(
        self, ctx: _Context, actor_id: str, items: list[Ranked], source: Source, signed_in: bool
    ) -> Recommendation:
        result = Recommendation(
            rec_id=os.urandom(16).hex(),  # 128 random bits as uuid4().hex, ~2 us cheaper
            user_id=actor_id,
            model_version=ctx.model.version,
            items=items,
            degraded=bool(ctx.reasons),
            source=source,
            degraded_reasons=tuple(dict.fromkeys(ctx.reasons)) if ctx.reasons else (),
        )
        self._impression(result, signed_in)
        return result

    async def _rank_pool(
        self,
        ctx: _Context,
        pool: _Pool,
        depth: int,
        k: int,
        now: datetime,
        rules: RankingRules,
        seen: np.ndarray,
        category: str | None,
    ) -> tuple[list[Ranked], np.ndarray]:
        """The rules over the first `depth` of a pool, on arrays; (ranked, their indices)."""
        model = ctx.model
        items, scores = pool.items[:depth], pool.scores[:depth]
        origin, anchor = pool.origin[:depth], pool.anchor[:depth]
        anchors = anchor[anchor >= 0]
        unusable = await self._refresh(ctx, np.concatenate([items, anchors]))
        table = model.items
        meta = table.gather(items, unusable)
        drop = None
        if len(seen):  # seen is sorted: a binary search per candidate
            at = np.minimum(seen.searchsorted(items), len(seen) - 1)
            drop = seen[at] == items
        chosen = choose(scores, meta, k, now, rules, drop, category)
        if not chosen:
            return [], _NONE
        positions = np.array([c[0] for c in chosen], dtype=np.int64)
        picked = items[positions]
        ids = model.item_ids_of(picked)
        # Plain lists of the picked rows: one numpy element access costs ~100 ns.
        titles = meta.titles[positions].tolist()
        categories = meta.categories[positions].tolist()
        origins = origin[positions].tolist()
        behind = anchor[positions].tolist()
        ranked = []
        for n, (_, final, fresh) in enumerate(chosen):
            label = None
            a = behind[n]
            if a >= 0:
                usable = bool(table.known[a]) and (unusable is None or a not in unusable)
                label = table.titles[a] if usable and table.titles[a] else model.item_id(a)
            ranked.append(
                Ranked(
                    item_id=ids[n],
                    score=round(final, 6),
                    title=titles[n],
                    categories=categories[n],
                    reason=reason(_ORIGINS[origins[n]], fresh, label),
                )
            )
        return ranked, picked

    async def _refresh(self, ctx: _Context, indices: np.ndarray) -> np.ndarray | None:
        """Read the expired metadata rows of these items; the rows it could not read, if any."""
        table = ctx.model.items
        versioned = getattr(self.features, "items_version", None)
        if versioned is not None and table.version_due():
            # On failure the rows expire after their TTL, as with a store without versions.
            with contextlib.suppress(BackendError):
                table.confirm(await self.features_guard.call(versioned))
        stale = table.stale(indices)
        if not len(stale):
            return None
        ids = ctx.model.item_ids_of(stale)
        fetched = await self._guarded(
            ctx, self.features_guard, "features", self.features.get_items, ids
        )
        if fetched is None:
            return stale
        table.fill(stale, ids, fetched)
        return None

    async def _cold_answer(
        self,
        ctx: _Context,
        history: list[HistoryEntry],
        k: int,
        exclude_seen: bool,
        category: str | None,
        now: datetime,
    ) -> list[Ranked]:
        """Cold start ranks by item id: its fresh items may be newer than the model."""
        model = ctx.model
        seen = frozenset(h.item_id for h in history)
        scored = await self._cold_start(ctx, category)
        wanted = [s.item_id for s in scored[: max(k * _META_FACTOR, 40)]]
        metadata = await self._items(ctx, wanted)
        rules = replace(self.rules, freshness_boost=self.rules.cold_start_freshness_boost)
        items = rank(
            scored[: len(wanted)],
            metadata or {},
            k,
            now,
            rules,
            seen=seen if exclude_seen else frozenset(),
            category=category,
        )
        if len(items) < k:  # rules left too few: top up from popularity
            taken = {i.item_id for i in items} | (seen if exclude_seen else set())
            extra = [s for s in self._popularity(model, taken) if s.item_id not in taken]
            items += rank(
                extra[: k * _META_FACTOR], metadata or {}, k - len(items), now, self.rules
            )
        return items[:k]

    async def _items(self, ctx: _Context, item_ids: list[str]) -> dict[str, ItemFeatures] | None:
        """Item metadata through the per-worker cache; None when the store failed."""
        found, missing = self.item_cache.split(item_ids)
        if missing:
            fetched = await self._guarded(
                ctx, self.features_guard, "features", self.features.get_items, missing
            )
            if fetched is None:
                return found or None
            self.item_cache.store(missing, fetched)
            found |= fetched
        return found

    def _history(self, actor_id: str) -> list[HistoryEntry]:
        return self.features.recent_history(actor_id, HISTORY_LIMIT)

    async def _personalised(
        self,
        ctx: _Context,
        history: list[HistoryEntry],
        row: HistoryRow,
        k: int,
        exclude_seen: bool,
        category: str | None,
    ) -> tuple[_Pool, Source]:
        model = ctx.model
        vector = model.user_vector(row)
        recent = list(row.recent)
        recent_set = set(recent)
        trained = [int(i) for i in row.indices.tolist() if i not in recent_set]
        query = CandidateQuery(
            user_vector=vector,
            history=np.asarray(recent + trained, dtype=np.int64),
            n=N_CANDIDATES,
            category=category,
            exclude=frozenset(recent + trained) if exclude_seen else frozenset(),
        )
        found = await self._candidates(ctx, query)
        if found is None or not len(found):
            exclude = np.fromiter(query.exclude, np.int64, len(query.exclude))
            source: Source = "personalised" if found is not None else "popularity_fallback"
            return self._popular_pool(model, exclude), source
        scores = model.score(vector, found.items)
        # Only the best few go on to the rules: they never look further down.
        order = top_indices(scores, max(k * _META_FACTOR, 40))
        return _Pool(
            found.items[order], scores[order], found.origin[order], found.anchor[order]
        ), "personalised"

    async def _candidates(self, ctx: _Context, query: CandidateQuery) -> Candidates | None:
        return await self._retrieve(ctx, lambda source: source.candidates, query)

    async def _similar(
        self, ctx: _Context, index: int, n: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        return await self._retrieve(ctx, lambda source: source.similar, index, n)

    async def _retrieve(
        self, ctx: _Context, method: Callable[[CandidateSource], Callable[..., T]], *args: Any
    ) -> T | None:
        """Ask the configured source, or the model's own lists when it cannot answer."""
        model = ctx.model
        placement = self.candidates.placement(model)
        if placement is Placement.SERVED:
            found = await self._guarded(
                ctx, self.candidates_guard, "candidates", method(self.candidates), model, *args
            )
            if found is not None or self.own_lists is self.candidates:
                return found
        elif placement is Placement.PENDING:
            self._degrade(ctx, "candidates")
        return method(self.own_lists)(model, *args)

    def _popular_pool(self, model: ServedModel, exclude: np.ndarray) -> _Pool:
        """The model's popular list as a pool (the degraded answer and the top-up)."""
        indices = np.asarray(model.popular, dtype=np.int64)
        if len(exclude):
            indices = indices[~np.isin(indices, exclude)]
        popularity = np.log1p(np.maximum(np.asarray(model.bundle.item_popularity)[indices], 0.0))
        n = len(indices)
        origin = np.full(n, int(Origin.POPULAR), np.int8)
        return _Pool(indices, popularity, origin, np.full(n, -1, np.int64))

    async def _cold_start(self, ctx: _Context, category: str | None) -> list[Scored]:
        """Popular and fresh, in the requested category when there is one."""
        model = ctx.model
        fresh = await self._guarded(
            ctx, self.features_guard, "features", self.features.newest_items, _FRESH_ITEMS, category
        )
        popular = self._popularity(model, set(), category)
        by_id = {s.item_id: s for s in popular}
        # Fresh items go first: the list is cut before ranking, and ranking re-sorts it anyway.
        newest = (fresh or [])[: _FRESH_ITEMS // 5]
        first = [by_id.pop(i.item_id, Scored(i.item_id, 0.0, Origin.POPULAR)) for i in newest]
        return first + list(by_id.values())

    def _popularity(
        self, model: ServedModel, exclude: set[str], category: str | None = None
    ) -> list[Scored]:
        """The model's popular list as scored candidates (the degraded answer)."""
        if category is not None and category in model.category_items:
            pool = model.category_items[category]
            pop = np.asarray(model.bundle.item_popularity)[pool]
            indices = pool[np.argsort(-pop, kind="stable")][:N_CANDIDATES]
        else:
            indices = np.asarray(model.popular)
        popularity = np.log1p(np.maximum(np.asarray(model.bundle.item_popularity)[indices], 0.0))
        return [
            Scored(item_id, score, Origin.POPULAR)
            for item_id, score in zip(model.item_ids_of(indices), popularity.tolist(), strict=True)
            if item_id not in exclude
        ]

    # ---- GET /items/{id}/similar --------------------------------------------------------------

    async def similar(self, item_id: str, k: int = 10) -> tuple[str, list[Ranked], bool]:
        """Items similar to `item_id`; an item the model does not know gets popular items."""
        ctx = _Context(self.model())
        model = ctx.model
        index = model.index_of(item_id)
        scored: list[Scored] = []
        if index is not None:
            found = await self._similar(ctx, index, k * 3)
            if found is not None:
                ids, sims = found
                scored = [
                    Scored(similar_id, float(s), Origin.NEIGHBOUR, item_id)
                    for similar_id, s in zip(model.item_ids_of(ids), sims.tolist(), strict=True)
                ]
        if not scored:
            scored = self._popularity(model, {item_id})
        wanted = [s.item_id for s in scored[: k * _META_FACTOR]]
        metadata = await self._items(ctx, [*wanted, item_id])
        items = rank(
            scored[: len(wanted)],
            metadata or {},
            k,
            datetime.now(UTC),
            self.rules,
            seen=frozenset({item_id}),
        )
        return model.version, items, bool(ctx.reasons)

    # ---- events -------------------------------------------------------------------------------

    async def record_events(self, events: Sequence[Event]) -> int:
        """Queue events for the lake and update histories now, so the next answer sees them."""
        self.sink.submit(events)  # SinkFullError -> 503 before anything else happens
        try:
            await self.history_guard.call(self.features.append_history, events)
        except BackendError as exc:
            # The sink still delivers them, and the ingest path appends them to history later.
            self.metrics.backend_errors.labels("features").inc()
            log.warning("history update failed, left to the ingest path: %s", exc)
        return len(events)

    def _impression(self, result: Recommendation, signed_in: bool) -> None:
        if not result.items:
            return
        impression = Impression(
            rec_id=result.rec_id,
            actor_id=result.user_id,
            signed_in=signed_in,
            item_ids=[i.item_id for i in result.items],
            model_version=result.model_version,
            timestamp=datetime.now(UTC),
        )
        try:
            self.sink.submit_impression(impression)
            self._impressions_queued.inc()
        except SinkFullError:  # an impression is never worth failing a recommendation
            self._impressions_dropped.inc()

    async def _guarded(
        self, ctx: _Context, guard: Guard, name: str, fn: Callable[..., T], *args: Any
    ) -> T | None:
        try:
            return await guard.call(fn, *args)
        except BackendError as exc:
            self.metrics.backend_errors.labels(name).inc()
            self._degrade(ctx, name)
            now, last = time.monotonic(), self._degraded_logged_at.get(name)
            if last is None or now - last >= DEGRADED_LOG_EVERY_S:
                self._degraded_logged_at[name] = now
                log.warning(
                    "degraded answer: %s (logged at most every %.0f s)", exc, DEGRADED_LOG_EVERY_S
                )
            return None

    def _degrade(self, ctx: _Context, reason: str) -> None:
        ctx.reasons.append(reason)
        self.metrics.degraded.labels(reason).inc()
