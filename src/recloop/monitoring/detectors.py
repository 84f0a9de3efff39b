"""The four detectors. Each takes plain inputs and returns an Alarm carrying its evidence.

- engagement_drop: the model's CTR block by block against what its own reference and the hour
  of day predict, by a CUSUM whose false alarms per 30 days are set by on-call's budget,
  however often it is checked (statistics in `sequential`), with minimum volumes on both sides.
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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.stats import norm

from recloop.config import Settings
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.engagement import Counts, Engagement
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.sequential import (
    BlockStats,
    DiurnalShape,
    Reference,
    block_stats,
    cusum,
    fit_shape,
    information,
    reference,
    span_start,
    threshold_for,
)

ENGAGEMENT_DROP = "engagement_drop"
STALE_MODEL = "stale_model"
SILENT_STREAM = "silent_stream"
TRAFFIC_DRIFT = "traffic_drift"


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and windows of every detector (see the monitor_* settings)."""

    current: timedelta = timedelta(minutes=60)  # an alarm fires while its crossing is this recent
    baseline: timedelta = timedelta(minutes=360)  # the reference window
    attribution: timedelta = timedelta(minutes=15)
    min_impressions: int = 300
    # On-call's budget: expected false alarms per 30 days of one model version in service.
    false_alarms_per_30_days: float = 1.0
    min_relative_drop: float = 0.20  # the drop the CUSUM is tuned to (it ignores under half)
    block: timedelta = timedelta(minutes=15)  # CUSUM step; false alarms are counted per block
    restart: timedelta | None = None  # CUSUM span grid (None: the baseline's length)
    seasonality: timedelta = timedelta(days=7)  # CTR-by-hour-of-day is fitted over this
    harmonics: int = 2  # of the hour-of-day Fourier series (0: no hour-of-day correction)
    # True: the threshold from Siegmund's run-length approximation at the reference's traffic;
    # False: Lorden's bound (a guarantee whatever the traffic, detects later).
    calibrate: bool = True
    alpha: float = 0.01  # one-shot comparisons (the loop's guard), not the drop detector
    max_model_age: timedelta = timedelta(hours=168)
    silence: timedelta = timedelta(minutes=15)
    drift_max_unknown_items: float = 0.20
    drift_max_unknown_users: float = 0.50
    drift_min_events: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise MonitorError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.min_relative_drop < 1:
            raise MonitorError(
                f"min_relative_drop must be in (0, 1) (the drop the CUSUM looks for), "
                f"got {self.min_relative_drop}"
            )
        if self.false_alarms_per_30_days <= 0:
            raise MonitorError("false_alarms_per_30_days must be > 0")
        if self.block <= timedelta(0) or self.block > timedelta(hours=1):
            raise MonitorError(f"block must be in (0, 1 h], got {self.block}")
        if self.restart_seconds < self.block.total_seconds():
            raise MonitorError("restart must be at least one block")

    @property
    def restart_seconds(self) -> float:
        return (self.restart or self.baseline).total_seconds()

    @property
    def threshold(self) -> float:
        """The CUSUM threshold for `false_alarms_per_30_days` at this block width."""
        return threshold_for(self.false_alarms_per_30_days, self.block.total_seconds())

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorConfig:
        return cls(
            current=timedelta(minutes=settings.monitor_current_minutes),
            baseline=timedelta(minutes=settings.monitor_baseline_minutes),
            attribution=timedelta(minutes=settings.monitor_attribution_minutes),
            min_impressions=settings.monitor_min_impressions,
            false_alarms_per_30_days=settings.monitor_false_alarms_per_30_days,
            min_relative_drop=settings.monitor_min_relative_drop,
            block=timedelta(minutes=settings.monitor_block_minutes),
            seasonality=timedelta(days=settings.monitor_seasonality_days),
            alpha=settings.monitor_guard_alpha,
            max_model_age=timedelta(hours=settings.monitor_max_model_age_hours),
            silence=timedelta(minutes=settings.monitor_silence_minutes),
            drift_max_unknown_items=settings.monitor_drift_max_unknown_items,
            drift_max_unknown_users=settings.monitor_drift_max_unknown_users,
            drift_min_events=settings.monitor_drift_min_events,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v.total_seconds() if isinstance(v, timedelta) else v for k, v in asdict(self).items()
        }
        out["restart"] = self.restart_seconds
        out["threshold"] = round(self.threshold, 4)
        return out


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


# ---- the engagement-drop detector ------------------------------------------------------------


def _floor(value: datetime, step: timedelta) -> datetime:
    seconds = step.total_seconds()
    return datetime.fromtimestamp(math.floor(value.timestamp() / seconds) * seconds, UTC)


def drop_windows(
    now: datetime, config: MonitorConfig, baseline_start: datetime | None = None
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(monitored span, reference window) of the drop detector at `now`.

    The span ends at the last block boundary one attribution window before now (its
    impressions had their full chance to be clicked) and starts on the restart grid
    (`sequential.span_start`), so every check in the same grid cell recomputes the same CUSUM.
    The reference is the model's own traffic in the `seasonality` before the span, from
    `baseline_start` (its promotion, or an incident's pre-drop baseline) at the earliest; the
    span then starts at least one `baseline` after that.
    """
    cur_hi = _floor(_utc(now) - config.attribution, config.block)
    earliest = (_utc(baseline_start) + config.baseline).timestamp() if baseline_start else None
    lo = datetime.fromtimestamp(
        span_start(cur_hi.timestamp(), config.restart_seconds, earliest), UTC
    )
    ref_lo = lo - config.seasonality
    if baseline_start is not None:
        ref_lo = max(ref_lo, _utc(baseline_start))
    return (lo, max(lo, cur_hi)), (ref_lo, lo)


def recent_window(now: datetime, config: MonitorConfig) -> tuple[datetime, datetime]:
    """The last `current` of complete blocks: what dashboards and EMF report CTR over."""
    hi = _floor(_utc(now) - config.attribution, config.block)
    return hi - config.current, hi


@dataclass(frozen=True)
class DropReference:
    """What one span's CUSUM compares with: fixed for every check in the same span."""

    window: tuple[datetime, datetime]  # the model's own reference window
    shape: DiurnalShape  # CTR by hour of day, all versions, over the seasonality window
    reference: Reference
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": [t.isoformat() for t in self.window],
            "impressions": self.reference.impressions,
            "clicked": self.reference.clicked,
            "level": round(self.reference.level, 6),
            "design_effect": round(self.reference.design_effect, 4),
            "threshold": round(self.threshold, 4),
            "shape": self.shape.to_dict(),
        }


def _epoch_seconds(ts: pd.Series) -> np.ndarray:
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def drop_reference(
    hourly: pd.DataFrame,
    rows: pd.DataFrame,
    window: tuple[datetime, datetime],
    config: MonitorConfig,
) -> DropReference:
    """The reference: the hour-of-day shape and the model's level and variance inflation.

    `hourly` (bucket, impressions, clicked) counts every version over the seasonality window:
    the shape of the day is the users', not the model's. `rows` are the model's own engagement
    rows in the reference `window`.
    """
    shape = fit_shape(
        _epoch_seconds(hourly["bucket"]),
        hourly["impressions"].to_numpy(dtype=float),
        hourly["clicked"].to_numpy(dtype=float),
        config.harmonics,
    )
    stats = _blocks(rows, config)
    block_s = config.block.total_seconds()
    ref = reference(stats, shape, block_s)
    info = (
        information(stats, ref, shape, config.min_relative_drop, block_s)
        if config.calibrate
        else None
    )
    threshold = threshold_for(config.false_alarms_per_30_days, block_s, info)
    return DropReference(window, shape, ref, threshold)


def reference_from_engagement(
    engagement: Engagement, version: str, window: tuple[datetime, datetime], config: MonitorConfig
) -> DropReference:
    """drop_reference from an Engagement that covers the window and the seasonality before it."""
    season = engagement.window(window[1] - config.seasonality, window[1])
    hourly = Engagement(season, engagement.start, engagement.end).ctr(by=(), freq="1h")
    rows = engagement.window(*window)
    return drop_reference(hourly, rows[rows["model_version"] == version], window, config)


def _blocks(frame: pd.DataFrame, config: MonitorConfig) -> BlockStats:
    actor = frame["actor_id"].where(frame["actor_id"].notna(), frame["rec_id"])
    codes, _ = pd.factorize(actor)
    return block_stats(
        _epoch_seconds(frame["timestamp"]),
        codes,
        (frame["clicks"] > 0).to_numpy(),
        config.block.total_seconds(),
    )


def engagement_drop(
    engagement: Engagement,
    model_version: str,
    now: datetime,
    config: MonitorConfig,
    baseline_start: datetime | None = None,
    ref: DropReference | None = None,
) -> Alarm:
    """Has `model_version`'s CTR dropped against its own reference? (a CUSUM, see sequential).

    `engagement` covers the monitored span (and the reference window and its seasonality when
    `ref` is not given: run_checks computes `ref` once per span and passes it in). Fires while
    the CUSUM's latest crossing is less than `current` old; a crossing resets the statistic.
    """
    now = _utc(now)
    (lo, hi), ref_window = drop_windows(now, config, baseline_start)
    if ref is None or ref.window != ref_window:
        ref = reference_from_engagement(engagement, model_version, ref_window, config)
    span = engagement.window(lo, hi)
    span = span[span["model_version"] == model_version]
    recent_lo = max(lo, recent_window(now, config)[0])
    recent = engagement.counts(model_version, recent_lo, hi)
    evidence: dict[str, Any] = {
        "method": "cusum",
        "current_window": [lo.isoformat(), hi.isoformat()],
        "baseline_window": [t.isoformat() for t in ref_window],
        "recent_window": [recent_lo.isoformat(), hi.isoformat()],
        "current": _counts(span).to_dict(),
        "recent": recent.to_dict(),
        "baseline": Counts(ref.reference.impressions, ref.reference.clicked).to_dict(),
        "reference": ref.to_dict(),
        "min_impressions": config.min_impressions,
        "min_relative_drop": config.min_relative_drop,
        "false_alarms_per_30_days": config.false_alarms_per_30_days,
    }

    def alarm(state: AlarmState, summary: str) -> Alarm:
        return Alarm(ENGAGEMENT_DROP, state, summary, now, model_version, evidence)

    if ref.reference.impressions < config.min_impressions or len(span) < config.min_impressions:
        return alarm(
            AlarmState.INSUFFICIENT_DATA,
            f"{model_version}: {len(span)} monitored and {ref.reference.impressions} reference "
            f"impressions, need {config.min_impressions} in each",
        )
    if ref.reference.level <= 0:
        return alarm(AlarmState.INSUFFICIENT_DATA, f"{model_version}: no clicks in the reference")
    block_s = config.block.total_seconds()
    stats = _blocks(span, config)
    result = cusum(
        stats, ref.reference, ref.shape, config.min_relative_drop, ref.threshold, block_s
    )
    crossed = [
        datetime.fromtimestamp(float(stats.start[i]) + block_s, UTC) for i in result.crossings
    ]
    # The size of the drop over the recent window (an excursion's own estimate is biased up:
    # it is chosen for having crossed).
    in_recent = stats.start >= recent_lo.timestamp()
    observed = float(stats.clicked[in_recent].sum())
    expected = float(result.expected[in_recent].sum())
    relative = 1 - observed / expected if expected > 0 else 0.0
    evidence.update(
        statistic=round(result.statistic, 4),
        threshold=round(ref.threshold, 4),
        crossings=[t.isoformat() for t in crossed],
        crossed_at=crossed[-1].isoformat() if crossed else None,
        relative_drop=round(relative, 4),
        expected_ctr=round(float(result.expected.sum() / stats.impressions.sum()), 6),
        path=[round(float(x), 3) for x in result.path],
    )
    if crossed and crossed[-1] > hi - config.current:
        return alarm(
            AlarmState.ALARM,
            f"{model_version}: engagement dropped, CTR {recent.ctr:.2%} in the last "
            f"{config.current} ({-relative:+.1%} against what its reference expects), "
            f"CUSUM crossed at {crossed[-1]:%H:%M}",
        )
    return alarm(
        AlarmState.OK,
        f"{model_version}: no drop, CTR {recent.ctr:.2%} ({-relative:+.1%} against expected), "
        f"CUSUM {result.statistic:.2f} of {ref.threshold:.2f}",
    )


def _counts(frame: pd.DataFrame) -> Counts:
    clicks = frame["clicks"].to_numpy()
    return Counts(len(frame), int((clicks > 0).sum()), int(frame["slots"].sum()), int(clicks.sum()))


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
