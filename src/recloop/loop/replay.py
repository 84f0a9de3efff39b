"""Replay MovieLens week by week through the ingest path and compare retraining policies.

Each week's ratings (views; ratings >= 4 also clicks, as the importer maps them) are ingested
into a lake. Before a week is ingested, every policy's current model recommends for that week's
users from their history so far, and is scored on the week's clicks (recall@K, nDCG@K):

    frozen      trained once on the first `warmup_weeks` weeks, never again
    weekly      retrained on everything so far before every week
    on_trigger  retrained when the monitor would have asked: the model's recall on the week
                just past fell `decay` below its first week's, or more than `max_unknown_items`
                of that week's interactions were on items the model does not know (the drift
                detector's rule)

Every model computes a user's vector from the history at the time (as serving does), so the
frozen model is only short of what it never saw: new items and how items relate lately. The
gap between weekly and frozen over the last weeks is the value of continuous retraining.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recloop.errors import ImportDataError
from recloop.importers.movielens import rating_events
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.registry.gate import BundleOnItems
from recloop.training.bundle import BundleMeta, ModelBundle
from recloop.training.dataset import DatasetConfig, InteractionData, align, from_table
from recloop.training.evaluation import evaluate, select_users
from recloop.training.models import make

log = logging.getLogger(__name__)

POLICIES = ("frozen", "weekly", "on_trigger")
_COLUMNS = ["user_id", "item_id", "event_type", "timestamp"]
_EMPTY = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
    ]
)
WEEK = timedelta(days=7)
_RATING_FILES = {
    "u.data": ("\t", "ml-100k"),
    "ratings.dat": ("::", "ml-1m"),
}


@dataclass(frozen=True)
class ReplayConfig:
    """Model, protocol and trigger rule of a replay."""

    family: str = "als"
    params: dict[str, Any] = field(
        default_factory=lambda: {"factors": 32, "regularization": 0.05, "iterations": 15}
    )
    k: int = 10
    warmup_weeks: int = 4
    last_weeks: int = 8  # the summary averages over these
    decay: float = 0.15  # on_trigger: relative recall loss that calls for a retrain
    max_unknown_items: float = 0.20  # on_trigger: the drift detector's default
    click_threshold: int = 4
    seed: int = 42


@dataclass
class WeekResult:
    """One week's scores per policy, and who was scored."""

    week: int
    start: datetime
    users: int
    clicks: int
    metrics: dict[str, dict[str, float]]  # policy -> {"recall@10": ..., "ndcg@10": ...}
    retrained: list[str]  # policies that retrained before this week
    unknown_items: float  # the on_trigger model's share of last week's interactions

    def to_dict(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "start": self.start.isoformat(),
            "users": self.users,
            "clicks": self.clicks,
            "metrics": self.metrics,
            "retrained": self.retrained,
            "unknown_items": round(self.unknown_items, 4),
        }


@dataclass
class ReplayResult:
    """Per-week results and the per-policy means over the last weeks."""

    dataset: str
    weeks: list[WeekResult]
    config: ReplayConfig
    retrains: dict[str, int]
    lake_uri: str

    def means(self, last: int | None = None) -> dict[str, dict[str, float]]:
        """Mean of each metric per policy over the last `last` evaluated weeks."""
        picked = self.weeks[-(last or self.config.last_weeks) :]
        out: dict[str, dict[str, float]] = {}
        for policy in POLICIES:
            names = picked[0].metrics[policy].keys() if picked else []
            out[policy] = {
                name: float(np.mean([w.metrics[policy][name] for w in picked])) for name in names
            }
        return out

    def summary(self) -> dict[str, Any]:
        k = self.config.k
        means = self.means()
        recall = f"recall@{k}"
        return {
            "dataset": self.dataset,
            "weeks_evaluated": len(self.weeks),
            "last_weeks": min(self.config.last_weeks, len(self.weeks)),
            "means": means,
            "weekly_minus_frozen_recall": means["weekly"][recall] - means["frozen"][recall]
            if self.weeks
            else None,
            "retrains": self.retrains,
        }


def read_ratings(folder: Path) -> tuple[pd.DataFrame, str]:
    """user, item, rating, ts (epoch seconds), time-sorted, from an ML-100K or ML-1M folder."""
    for name, (sep, dataset) in _RATING_FILES.items():
        path = Path(folder) / name
        if path.is_file():
            try:
                frame = pd.read_csv(
                    path,
                    sep=sep,
                    names=["user", "item", "rating", "ts"],
                    engine="python" if len(sep) > 1 else "c",
                    dtype="int64",
                )
            except (ValueError, pd.errors.ParserError) as exc:
                raise ImportDataError(f"{path} is not a MovieLens ratings file: {exc}") from exc
            return frame.sort_values("ts", kind="stable").reset_index(drop=True), dataset
    raise ImportDataError(f"{folder} holds neither u.data (ML-100K) nor ratings.dat (ML-1M)")


def _bundle(model: Any, data: InteractionData) -> ModelBundle:
    counts = np.asarray((data.matrix > 0).sum(axis=0)).ravel().astype(np.float32)
    meta = BundleMeta(model.family, dict(model.params), None, data.end.isoformat(), "", data.nnz)
    return ModelBundle(model, data.item_ids, data.user_ids, counts, meta)


class Replay:
    """Runs the replay; `run()` returns a ReplayResult."""

    def __init__(
        self,
        folder: Path,
        lake: Lake,
        config: ReplayConfig | None = None,
        on_week: Callable[[WeekResult], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.lake = lake
        self.config = config or ReplayConfig()
        self.on_week = on_week or (lambda week: None)
        self.models: dict[str, ModelBundle] = {}
        self.first_recall: float | None = None  # on_trigger model's first evaluated week
        self._last_recall: float | None = None  # and its latest
        self.retrains = dict.fromkeys(POLICIES, 0)
        self._events = _EMPTY.empty_table()

    def _fit(self, end: datetime) -> ModelBundle:
        data = from_table(self._events, DatasetConfig(), end=end)
        model = make(self.config.family, **self.config.params).fit(data.matrix, data.ages)
        return _bundle(model, data)

    def run(self) -> ReplayResult:
        cfg = self.config
        ratings, dataset = read_ratings(self.folder)
        if ratings.empty:
            raise ImportDataError(f"{self.folder}: no ratings")
        first = datetime.fromtimestamp(int(ratings["ts"].min()), UTC)
        origin = first.replace(hour=0, minute=0, second=0, microsecond=0)
        week_of = (ratings["ts"].to_numpy() - int(origin.timestamp())) // int(WEEK.total_seconds())
        n_weeks = int(week_of.max()) + 1
        if n_weeks <= cfg.warmup_weeks:
            raise ImportDataError(f"{dataset} spans {n_weeks} weeks; the warm-up needs more")
        ingestor = Ingestor(self.lake)
        results: list[WeekResult] = []
        for week in range(n_weeks):
            start = origin + week * WEEK
            events = rating_events(ratings[week_of == week], dataset, cfg.click_threshold)
            ingestor.ingest_events(events, batch_id=f"replay-{dataset}-w{week:03d}")
            # What the week brought, read back from the lake (the ingest path's output).
            table, _ = self.lake.read_events(start, start + WEEK, columns=_COLUMNS)
            if week >= cfg.warmup_weeks:
                result = self._evaluate_week(week, start, table)
                if result is not None:
                    results.append(result)
                    self.on_week(result)
            self._events = pa.concat_tables([self._events, table])
        return ReplayResult(dataset, results, cfg, dict(self.retrains), self.lake.uri)

    def _evaluate_week(self, week: int, start: datetime, table: pa.Table) -> WeekResult | None:
        """Score every policy's model on this week's clicks, retraining first as it says."""
        retrained: list[str] = []
        if not self.models:
            bundle = self._fit(start)
            self.models = dict.fromkeys(POLICIES, bundle)
            retrained = list(POLICIES)
        else:
            self.models["weekly"] = self._fit(start)
            retrained.append("weekly")
        history = from_table(self._events, DatasetConfig(), end=start)
        unknown = self._unknown_share(start)
        if "on_trigger" not in retrained and self._triggered(unknown):
            self.models["on_trigger"] = self._fit(start)
            self.first_recall = None
            retrained.append("on_trigger")
        for policy in retrained:
            self.retrains[policy] += 1
        clicks = table.filter(pc.equal(table.column("event_type"), "click"))
        if clicks.num_rows == 0:
            return None
        test = from_table(clicks, DatasetConfig(event_weights={"click": 1.0}))
        return self._score(week, start, history, test, retrained, unknown)

    def _score(
        self,
        week: int,
        start: datetime,
        history: InteractionData,
        clicks: InteractionData,
        retrained: list[str],
        unknown: float,
    ) -> WeekResult | None:
        cfg = self.config
        # Items first seen this week cannot be recommended by any policy: they drop out.
        test = align(clicks, history.user_ids, history.item_ids)
        users = select_users(test)
        if len(users) == 0:
            return None
        metrics: dict[str, dict[str, float]] = {}
        for policy in POLICIES:
            model = BundleOnItems(self.models[policy], history.item_ids)
            result = evaluate(model, history.matrix, test, cfg.k, users)
            metrics[policy] = {
                f"recall@{cfg.k}": result.metrics[f"recall@{cfg.k}"],
                f"ndcg@{cfg.k}": result.metrics[f"ndcg@{cfg.k}"],
            }
        if self.first_recall is None:
            self.first_recall = metrics["on_trigger"][f"recall@{cfg.k}"]
        self._last_recall = metrics["on_trigger"][f"recall@{cfg.k}"]
        return WeekResult(week, start, len(users), int(test.nnz), metrics, retrained, unknown)

    def _unknown_share(self, start: datetime) -> float:
        """Share of last week's interactions on items the on_trigger model does not know."""
        if "on_trigger" not in self.models:
            return 0.0
        ts = self._events.column("timestamp")
        lo = pa.scalar(start - WEEK, ts.type)
        items = self._events.filter(pc.greater_equal(ts, lo)).column("item_id")
        if len(items) == 0:
            return 0.0
        known = pa.array(np.asarray(self.models["on_trigger"].item_ids).astype(str))
        unknown = pc.invert(pc.is_in(items, value_set=known))
        return float(pc.sum(unknown).as_py() or 0) / len(items)

    def _triggered(self, unknown: float) -> bool:
        cfg = self.config
        if unknown > cfg.max_unknown_items:
            return True
        recall = self._last_recall
        if self.first_recall is None or recall is None or self.first_recall <= 0:
            return False
        return recall < (1 - cfg.decay) * self.first_recall


def replay_movielens(
    folder: Path,
    lake_uri: str | None = None,
    config: ReplayConfig | None = None,
    on_week: Callable[[WeekResult], None] | None = None,
) -> ReplayResult:
    """Replay a MovieLens folder into `lake_uri` (default: a fresh temporary lake)."""
    if lake_uri is None:
        tmp = Path(tempfile.mkdtemp(prefix="recloop-replay-"))
        lake_uri = (tmp / "lake").as_uri()
    return Replay(folder, Lake.from_uri(lake_uri), config, on_week).run()


def plot_replay(result: ReplayResult, out: Path) -> Path:
    """recall@K and nDCG@K per week and policy, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.config.k
    weeks = [w.week for w in result.weeks]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for ax, metric in zip(axes, (f"recall@{k}", f"ndcg@{k}"), strict=True):
        for policy in POLICIES:
            values = [w.metrics[policy][metric] for w in result.weeks]
            ax.plot(weeks, values, marker="o", markersize=3, label=policy.replace("_", " "))
        trig = [w.week for w in result.weeks if "on_trigger" in w.retrained]
        for x in trig[1:]:
            ax.axvline(x, color="grey", alpha=0.25, linewidth=1)
        if len(weeks) >= result.config.last_weeks:
            ax.axvspan(weeks[-result.config.last_weeks] - 0.5, weeks[-1] + 0.5, alpha=0.07)
        ax.set_title(f"{metric} per week ({result.dataset})")
        ax.set_xlabel("week")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
