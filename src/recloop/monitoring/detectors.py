"""The four detectors. Each takes plain inputs and returns an Alarm carrying its evidence.

- engagement_drop: the current window's CTR against the same model's baseline window, by a
  one-sided two-proportion z-test or a Bernoulli CUSUM, with minimum volumes on both sides.
- stale_model: the model is older than the maximum age.
- silent_stream: no event has arrived for N minutes (the no-weblogs alarm).
- traffic_drift: too much traffic on items or from users the model does not know.

Detectors never read configuration themselves: a MonitorConfig (from Settings, or built by the
loop or a test) says what the thresholds and windows are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import norm

from recloop.config import Settings
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.engagement import Counts, Engagement
from recloop.monitoring.errors import MonitorError

ENGAGEMENT_DROP = "engagement_drop"
STALE_MODEL = "stale_model"
SILENT_STREAM = "silent_stream"
TRAFFIC_DRIFT = "traffic_drift"


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and windows of every detector (see the monitor_* settings)."""

    current: timedelta = timedelta(minutes=60)
    baseline: timedelta = timedelta(minutes=360)
    attribution: timedelta = timedelta(minutes=15)
    min_impressions: int = 300
    drop_method: Literal["ztest", "cusum"] = "ztest"
    alpha: float = 0.01
    min_relative_drop: float = 0.10
    cusum_bucket: timedelta = timedelta(minutes=5)
    max_model_age: timedelta = timedelta(hours=168)
    silence: timedelta = timedelta(minutes=15)
    drift_max_unknown_items: float = 0.20
    drift_max_unknown_users: float = 0.50
    drift_min_events: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise MonitorError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.drop_method not in ("ztest", "cusum"):
            raise MonitorError(f"unknown drop method {self.drop_method!r}: ztest or cusum")
        if self.drop_method == "cusum" and self.min_relative_drop <= 0:
            raise MonitorError("CUSUM needs min_relative_drop > 0 (the drop it looks for)")

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorConfig:
        return cls(
            current=timedelta(minutes=settings.monitor_current_minutes),
            baseline=timedelta(minutes=settings.monitor_baseline_minutes),
            attribution=timedelta(minutes=settings.monitor_attribution_minutes),
            min_impressions=settings.monitor_min_impressions,
            drop_method=settings.monitor_drop_method,
            alpha=settings.monitor_drop_alpha,
            min_relative_drop=settings.monitor_min_relative_drop,
            cusum_bucket=timedelta(minutes=settings.monitor_cusum_bucket_minutes),
            max_model_age=timedelta(hours=settings.monitor_max_model_age_hours),
            silence=timedelta(minutes=settings.monitor_silence_minutes),
            drift_max_unknown_items=settings.monitor_drift_max_unknown_items,
            drift_max_unknown_users=settings.monitor_drift_max_unknown_users,
            drift_min_events=settings.monitor_drift_min_events,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v.total_seconds() if isinstance(v, timedelta) else v for k, v in asdict(self).items()
        }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZTest:
    z: float
    p_value: float


def two_proportion_ztest(current: Counts, reference: Counts) -> ZTest:
    """One-sided pooled z-test of H1: current CTR < reference CTR (impressions as trials)."""
    n1, n2 = current.impressions, reference.impressions
    if n1 == 0 or n2 == 0:
        raise MonitorError("a two-proportion test needs impressions on both sides")
    pooled = (current.clicked + reference.clicked) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # no clicks at all, or every impression clicked: no evidence either way
        return ZTest(0.0, 0.5)
    z = (current.ctr - reference.ctr) / se
    return ZTest(z, float(norm.cdf(z)))


@dataclass(frozen=True)
class Cusum:
    statistic: float  # the largest value the CUSUM reached
    threshold: float
    crossed_at: datetime | None  # end of the first bucket at which it crossed
    path: list[float]


def bernoulli_cusum(
    buckets: pd.DataFrame, p0: float, p1: float, alpha: float, bucket: timedelta
) -> Cusum:
    """Page's CUSUM of the log-likelihood ratio of CTR p1 (dropped) against p0 (baseline).

    `buckets` has columns bucket (start time), impressions, clicked. The threshold log(1/alpha)
    is Wald's bound: under p0 the chance of ever crossing it in one run is at most alpha.
    """
    if not 0 < p1 < p0 < 1:
        raise MonitorError(f"CUSUM needs 0 < p1 < p0 < 1, got p0={p0}, p1={p1}")
    clicked = buckets["clicked"].to_numpy(dtype=float)
    missed = buckets["impressions"].to_numpy(dtype=float) - clicked
    llr = clicked * math.log(p1 / p0) + missed * math.log((1 - p1) / (1 - p0))
    threshold = math.log(1 / alpha)
    s, path, crossed = 0.0, [], None
    for i, step in enumerate(llr):
        s = max(0.0, s + float(step))
        path.append(round(s, 4))
        if crossed is None and s >= threshold:
            crossed = pd.Timestamp(buckets["bucket"].iloc[i]).to_pydatetime() + bucket
    return Cusum(max(path, default=0.0), threshold, crossed, path)


# ---- detectors --------------------------------------------------------------------------------


def drop_windows(
    now: datetime, config: MonitorConfig, baseline_start: datetime | None = None
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(current, baseline) windows of the drop detector at `now`.

    The current window ends one attribution window before now, so that its impressions had
    their full chance to be clicked. The baseline is the window just before it, or, with
    `baseline_start` (e.g. when the model was promoted), the model's first hours in service.
    """
    cur_hi = _utc(now) - config.attribution
    cur_lo = cur_hi - config.current
    base_lo = cur_lo - config.baseline if baseline_start is None else _utc(baseline_start)
    base_hi = min(base_lo + config.baseline, cur_lo)
    return (cur_lo, cur_hi), (base_lo, base_hi)


def engagement_drop(
    engagement: Engagement,
    model_version: str,
    now: datetime,
    config: MonitorConfig,
    baseline_start: datetime | None = None,
) -> Alarm:
    """Has `model_version`'s CTR dropped in the current window against its own baseline?"""
    now = _utc(now)
    (cur_lo, cur_hi), (base_lo, base_hi) = drop_windows(now, config, baseline_start)
    current = engagement.counts(model_version, cur_lo, cur_hi)
    baseline = engagement.counts(model_version, base_lo, base_hi) if base_hi > base_lo else Counts()
    evidence: dict[str, Any] = {
        "method": config.drop_method,
        "current_window": [cur_lo.isoformat(), cur_hi.isoformat()],
        "baseline_window": [base_lo.isoformat(), base_hi.isoformat()],
        "current": current.to_dict(),
        "baseline": baseline.to_dict(),
        "min_impressions": config.min_impressions,
        "alpha": config.alpha,
        "min_relative_drop": config.min_relative_drop,
    }

    def alarm(state: AlarmState, summary: str) -> Alarm:
        return Alarm(ENGAGEMENT_DROP, state, summary, now, model_version, evidence)

    short = min(current.impressions, baseline.impressions)
    if short < config.min_impressions:
        return alarm(
            AlarmState.INSUFFICIENT_DATA,
            f"{model_version}: {current.impressions} current and {baseline.impressions} baseline "
            f"impressions, need {config.min_impressions} in each",
        )
    test = two_proportion_ztest(current, baseline)
    relative = 1 - current.ctr / baseline.ctr if baseline.ctr > 0 else 0.0
    evidence.update(z=round(test.z, 4), p_value=test.p_value, relative_drop=round(relative, 4))
    big_enough = relative >= config.min_relative_drop
    if config.drop_method == "ztest":
        significant = test.p_value < config.alpha
    else:
        # The CUSUM accumulates over everything since the baseline ended, so that with a
        # baseline_start (the model's first hours) it weighs the model's whole life since.
        significant = _cusum_evidence(
            engagement, model_version, baseline, base_hi, cur_hi, config, evidence
        )
    change = f"CTR {baseline.ctr:.2%} -> {current.ctr:.2%} ({-relative:+.1%})"
    if significant and big_enough:
        return alarm(
            AlarmState.ALARM, f"{model_version}: engagement dropped, {change}, p={test.p_value:.2g}"
        )
    return alarm(AlarmState.OK, f"{model_version}: no significant drop, {change}")


def _cusum_evidence(
    engagement: Engagement,
    model_version: str,
    baseline: Counts,
    lo: datetime,
    hi: datetime,
    config: MonitorConfig,
    evidence: dict[str, Any],
) -> bool:
    p0 = baseline.ctr
    p1 = p0 * (1 - config.min_relative_drop)
    if not 0 < p1 < p0 < 1:
        evidence["cusum"] = None
        return False
    freq = pd.Timedelta(config.cusum_bucket)
    frame = engagement.window(lo, hi)
    frame = frame[frame["model_version"] == model_version]
    buckets = (
        frame.assign(
            clicked=(frame["clicks"] > 0).astype("int64"), bucket=frame["timestamp"].dt.floor(freq)
        )
        .groupby("bucket", sort=True)
        .agg(impressions=("rec_id", "size"), clicked=("clicked", "sum"))
        .reset_index()
    )
    result = bernoulli_cusum(buckets, p0, p1, config.alpha, config.cusum_bucket)
    evidence["cusum"] = {
        "statistic": round(result.statistic, 4),
        "threshold": round(result.threshold, 4),
        "p0": round(p0, 6),
        "p1": round(p1, 6),
        "crossed_at": result.crossed_at.isoformat() if result.crossed_at else None,
        "path": result.path,
    }
    return result.crossed_at is not None


def stale_model(
    model_version: str, trained_at: datetime | None, now: datetime, config: MonitorConfig
) -> Alarm:
    """Is the serving model older than the maximum age?"""
    now = _utc(now)
    limit = config.max_model_age.total_seconds() / 3600
    if trained_at is None:
        return Alarm(
            STALE_MODEL,
            AlarmState.INSUFFICIENT_DATA,
            f"{model_version}: training time unknown",
            now,
            model_version,
            {"max_age_hours": limit},
        )
    age = now - _utc(trained_at)
    hours = age.total_seconds() / 3600
    evidence = {
        "trained_at": _utc(trained_at).isoformat(),
        "age_hours": round(hours, 3),
        "max_age_hours": limit,
    }
    if age > config.max_model_age:
        return Alarm(
            STALE_MODEL,
            AlarmState.ALARM,
            f"{model_version}: {hours:.1f} h old, over the {limit:g} h limit",
            now,
            model_version,
            evidence,
        )
    return Alarm(
        STALE_MODEL,
        AlarmState.OK,
        f"{model_version}: {hours:.1f} h old",
        now,
        model_version,
        evidence,
    )


def silent_stream(
    last_event_at: datetime | None,
    now: datetime,
    config: MonitorConfig,
    looked_back: timedelta | None = None,
) -> Alarm:
    """Has the event stream been silent for at least `config.silence`?"""
    now = _utc(now)
    limit = config.silence.total_seconds() / 60
    if last_event_at is None:
        back = f" in the last {looked_back}" if looked_back else ""
        return Alarm(
            SILENT_STREAM,
            AlarmState.ALARM,
            f"no events{back}",
            now,
            None,
            {
                "last_event_at": None,
                "silence_minutes": limit,
                "looked_back_minutes": looked_back.total_seconds() / 60 if looked_back else None,
            },
        )
    quiet = max(now - _utc(last_event_at), timedelta(0))
    minutes = quiet.total_seconds() / 60
    evidence = {
        "last_event_at": _utc(last_event_at).isoformat(),
        "quiet_minutes": round(minutes, 3),
        "silence_minutes": limit,
    }
    if quiet >= config.silence:
        return Alarm(
            SILENT_STREAM,
            AlarmState.ALARM,
            f"no events for {minutes:.1f} min (limit {limit:g} min)",
            now,
            None,
            evidence,
        )
    return Alarm(
        SILENT_STREAM, AlarmState.OK, f"last event {minutes:.1f} min ago", now, None, evidence
    )


def _as_value_set(ids: Iterable[str] | np.ndarray) -> pa.Array:
    values = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids), dtype=object)
    return pa.array(values.astype(str) if values.dtype != object else values, type=pa.string())


def _strings(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
    return table.column(name).cast(pa.string())


def traffic_drift(
    events: pa.Table,
    known_items: Iterable[str] | np.ndarray | None,
    known_users: Iterable[str] | np.ndarray | None,
    now: datetime,
    config: MonitorConfig,
    model_version: str | None = None,
) -> Alarm:
    """Share of interactions on items, or from users, the model does not know.

    `events` has event_type, item_id, user_id, visitor_id (the lake schema); impressions are
    left out, since the API only shows items the model knows. Known ids come from the caller
    (the model's item and user index), as arrays.
    """
    now = _utc(now)
    if "event_type" not in events.column_names:
        raise MonitorError("traffic_drift needs an event_type column")
    interactions = events.filter(pc.not_equal(events.column("event_type"), "impression"))
    n = interactions.num_rows
    evidence: dict[str, Any] = {"events": n, "min_events": config.drift_min_events}
    if n < config.drift_min_events or (known_items is None and known_users is None):
        return Alarm(
            TRAFFIC_DRIFT,
            AlarmState.INSUFFICIENT_DATA,
            "the model's known ids are not available"
            if known_items is None and known_users is None
            else f"{n} interactions, need {config.drift_min_events}",
            now,
            model_version,
            evidence,
        )
    reasons = []
    if known_items is not None:
        item = _strings(interactions, "item_id")
        unknown = pc.invert(pc.is_in(item, value_set=_as_value_set(known_items)))
        share = pc.sum(unknown).as_py() / n
        top = pc.value_counts(item.filter(unknown)).to_pylist()
        top = sorted(top, key=lambda d: -d["counts"])[:5]
        evidence.update(
            unknown_item_share=round(share, 4),
            max_unknown_item_share=config.drift_max_unknown_items,
            top_unknown_items={d["values"]: d["counts"] for d in top},
        )
        if share > config.drift_max_unknown_items:
            reasons.append(f"{share:.0%} of interactions on unknown items")
    if known_users is not None:
        actor = pc.coalesce(_strings(interactions, "user_id"), _strings(interactions, "visitor_id"))
        unknown = pc.invert(pc.is_in(actor, value_set=_as_value_set(known_users)))
        share = pc.sum(unknown).as_py() / n
        evidence.update(
            unknown_user_share=round(share, 4),
            max_unknown_user_share=config.drift_max_unknown_users,
            unknown_users=len(pc.unique(actor.filter(unknown))),
        )
        if share > config.drift_max_unknown_users:
            reasons.append(f"{share:.0%} of interactions from unknown users")
    if reasons:
        return Alarm(
            TRAFFIC_DRIFT, AlarmState.ALARM, "; ".join(reasons), now, model_version, evidence
        )
    return Alarm(
        TRAFFIC_DRIFT,
        AlarmState.OK,
        "traffic is on what the model knows",
        now,
        model_version,
        evidence,
    )
