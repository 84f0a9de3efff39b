"""The champion's decay curve: its offline metric on each new day of data.

For each UTC day in [start, end) the champion is scored on that day's organic clicks (click
events without a rec_id: a click on a recommended list mostly measures agreement with the
model that showed it) for the users it was trained on. Each user's history is their training
row in the bundle, training items are excluded, exactly as at gate time, so a falling curve
means the world moved away from what the model learnt, not that the protocol changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recloop.lake import Lake
from recloop.lake.lake import as_utc
from recloop.monitoring.errors import MonitorError
from recloop.training.bundle import ModelBundle
from recloop.training.dataset import DatasetConfig, align, from_table
from recloop.training.evaluation import evaluate, select_users

_COLUMNS = ["event_id", "event_type", "timestamp", "user_id", "visitor_id", "item_id", "rec_id"]
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DayMetric:
    """The champion on one day: how many known users clicked, and its metrics at k on them.

    recall / ndcg are None on a day with no scorable user (no organic click by a known user
    on a known item).
    """

    day: date
    users: int
    k: int
    recall: float | None
    ndcg: float | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        return data


def decay_curve(
    lake: Lake,
    bundle: ModelBundle,
    start: datetime | date | str,
    end: datetime | date | str,
    k: int = 10,
) -> list[DayMetric]:
    """recall@k and ndcg@k of `bundle` on each UTC day in [start, end) (days are truncated)."""
    lo, hi = _day_start(start), _day_start(end)
    if not lo < hi:
        raise MonitorError(f"decay curve needs start < end, got {lo:%Y-%m-%d} .. {hi:%Y-%m-%d}")
    if k < 1:
        raise MonitorError(f"k must be >= 1, got {k}")
    if bundle.history is None:
        raise MonitorError("the bundle was saved without training histories")
    # Cast once: evaluate() would otherwise copy a memory-mapped history for every day.
    history = sp.csr_matrix(bundle.history, dtype=np.float32)
    table, _ = lake.read_events(lo, hi, _COLUMNS)
    clicks = _organic_clicks(table)
    out: list[DayMetric] = []
    day = lo
    while day < hi:
        out.append(_score_day(bundle, history, clicks, day, k))
        day += _DAY
    return out


def _day_start(value: datetime | date | str) -> datetime:
    try:
        when = as_utc(value)
    except ValueError as exc:
        raise MonitorError(f"not an ISO 8601 time: {value!r}") from exc
    if when is None:
        raise MonitorError(f"not a time: {value!r}")
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _organic_clicks(table: pa.Table) -> pa.Table:
    """Clicks without a rec_id, with the actor (user_id, else visitor_id) as user_id."""
    actor = pc.coalesce(table.column("user_id"), table.column("visitor_id"))
    keep = pc.and_(
        pc.and_(pc.equal(table.column("event_type"), "click"), pc.is_null(table.column("rec_id"))),
        pc.and_(pc.is_valid(actor), pc.is_valid(table.column("item_id"))),
    )
    clicks = pa.table(
        {"user_id": actor, "item_id": table.column("item_id"), "timestamp": table["timestamp"]}
    )
    return clicks.filter(pc.fill_null(keep, False))


def _score_day(
    bundle: ModelBundle, history: sp.csr_matrix, clicks: pa.Table, day: datetime, k: int
) -> DayMetric:
    ts = clicks.column("timestamp")
    in_day = pc.and_(
        pc.greater_equal(ts, pa.scalar(day, ts.type)), pc.less(ts, pa.scalar(day + _DAY, ts.type))
    )
    today = clicks.filter(in_day)
    if today.num_rows == 0:
        return DayMetric(day.date(), 0, k, None, None)
    # One click event weighs 1: the test matrix counts clicks, like the gate's validation.
    data = from_table(
        today, DatasetConfig(event_weights={"click": 1.0}), type_col=None, end=day + _DAY
    )
    test = align(data, bundle.user_ids, bundle.item_ids)
    users = select_users(test)
    if len(users) == 0:
        return DayMetric(day.date(), 0, k, None, None)
    result = evaluate(bundle.model, history, test, k=k, users=users)
    metrics = result.metrics
    return DayMetric(
        day.date(), len(users), k, float(metrics[f"recall@{k}"]), float(metrics[f"ndcg@{k}"])
    )
