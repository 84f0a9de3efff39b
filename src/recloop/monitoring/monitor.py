"""One monitoring pass over the lake: every detector for the serving model, in a few lines.

    report = run_checks(lake, ModelInfo("v7", trained_at=..., known_items=items), now=now)
    if report.triggers():   # engagement drop or stale model: retrain
        ...

The loop, the monitor Lambda and `recloop monitor check` all call `run_checks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from recloop.lake import Lake
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.detectors import (
    ENGAGEMENT_DROP,
    STALE_MODEL,
    MonitorConfig,
    drop_windows,
    engagement_drop,
    silent_stream,
    stale_model,
    traffic_drift,
)
from recloop.monitoring.engagement import Engagement

# Detectors whose alarm means "retrain now"; drift and silence call for a human first.
RETRAIN_TRIGGERS = (ENGAGEMENT_DROP, STALE_MODEL)
# Ingest accepts events this far in the future (client clocks): they count as "just now".
_FUTURE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class ModelInfo:
    """What the monitor needs to know about the serving model."""

    version: str
    trained_at: datetime | None = None
    promoted_at: datetime | None = None  # start of its own baseline window, when known
    known_items: Iterable[str] | np.ndarray | None = None
    known_users: Iterable[str] | np.ndarray | None = None


@dataclass
class MonitorReport:
    now: datetime
    model_version: str | None
    alarms: list[Alarm]
    config: MonitorConfig
    engagement: Engagement | None = field(default=None, repr=False)

    @property
    def firing(self) -> list[Alarm]:
        return [a for a in self.alarms if a.firing]

    def get(self, detector: str) -> Alarm | None:
        return next((a for a in self.alarms if a.detector == detector), None)

    def triggers(self, detectors: Sequence[str] = RETRAIN_TRIGGERS) -> list[Alarm]:
        """Firing alarms of the detectors that call for a retrain."""
        return [a for a in self.firing if a.detector in detectors]

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "model_version": self.model_version,
            "firing": [a.detector for a in self.firing],
            "alarms": [a.to_dict() for a in self.alarms],
            "config": self.config.to_dict(),
        }


def last_event_time(lake: Lake, now: datetime, lookback: timedelta) -> datetime | None:
    """Timestamp of the newest event in (now - lookback, now], reading only the newest hour."""
    newest = lake.newest_event(now - lookback, now + _FUTURE_SLACK)
    return None if newest is None else min(newest, now)


def _interactions(lake: Lake, lo: datetime, hi: datetime) -> pa.Table:
    columns = ["event_type", "item_id", "user_id", "visitor_id"]
    table, _ = lake.read_events(lo, hi, columns=columns, dedupe=False)
    return table


def run_checks(
    lake: Lake,
    model: ModelInfo | None,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
) -> MonitorReport:
    """Run every detector at `now` (default: the wall clock).

    With `model` None, the model is the version that served most impressions in the current
    window; its age and known ids are then unknown, so those detectors report
    INSUFFICIENT_DATA rather than guess.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    config = config or MonitorConfig()
    baseline_start = model.promoted_at if model else None
    (cur_lo, cur_hi), (base_lo, base_hi) = drop_windows(now, config, baseline_start)
    # CUSUM weighs everything after the baseline; the z-test only the current window.
    tested_from = base_hi if config.drop_method == "cusum" and base_hi > base_lo else cur_lo
    parts = [Engagement.from_lake(lake, tested_from, cur_hi, config.attribution)]
    if base_hi > base_lo:
        parts.append(Engagement.from_lake(lake, base_lo, base_hi, config.attribution))
    engagement = Engagement.concat(parts)

    version = model.version if model else _serving_version(engagement, cur_lo, cur_hi)
    alarms: list[Alarm] = []
    if version is None:
        alarms.append(
            Alarm(
                ENGAGEMENT_DROP,
                AlarmState.INSUFFICIENT_DATA,
                "no impressions in the current window",
                now,
            )
        )
    else:
        alarms.append(engagement_drop(engagement, version, now, config, baseline_start))
    alarms.append(
        stale_model(version or "unknown", model.trained_at if model else None, now, config)
    )
    lookback = max(config.silence * 4, timedelta(hours=2))
    alarms.append(silent_stream(last_event_time(lake, now, lookback), now, config, lookback))
    alarms.append(
        traffic_drift(
            _interactions(lake, now - config.current, now),
            model.known_items if model else None,
            model.known_users if model else None,
            now,
            config,
            version,
        )
    )
    return MonitorReport(now, version, alarms, config, engagement)


def _serving_version(engagement: Engagement, lo: datetime, hi: datetime) -> str | None:
    frame = engagement.window(lo, hi)
    if frame.empty:
        return None
    return str(frame["model_version"].value_counts().index[0])
