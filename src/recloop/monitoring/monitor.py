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
import pandas as pd
import pyarrow as pa

from recloop.events import EVENT_SCHEMA
from recloop.lake import Lake
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.detectors import (
    ENGAGEMENT_DROP,
    STALE_MODEL,
    DropReference,
    MonitorConfig,
    drop_reference,
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


_EMPTY = EVENT_SCHEMA.empty_table()


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
    (cur_lo, cur_hi), ref_window = drop_windows(now, config, baseline_start)
    engagement = Engagement.from_lake(
        lake, cur_lo, max(cur_hi, cur_lo + config.block), config.attribution
    )
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
        ref = _reference(lake, version, ref_window, config, now)
        alarms.append(engagement_drop(engagement, version, now, config, baseline_start, ref))
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


# A span's reference reads up to `seasonality` (7 days) of the lake; every check in the span
# uses the same one, so it is read once per span and process, not at every check.
_REFERENCES: dict[tuple[str, str, datetime, datetime, str], DropReference] = {}
_MAX_REFERENCES = 64


def _reference(
    lake: Lake,
    version: str,
    window: tuple[datetime, datetime],
    config: MonitorConfig,
    now: datetime,
) -> DropReference:
    key = (lake.uri, version, window[0], window[1], repr(config))
    cached = _REFERENCES.get(key)
    if cached is not None:
        return cached
    lo, hi = window[1] - config.seasonality, window[1]
    # Hour by hour over the hours that have data, keeping hourly counts and the model's own
    # reference rows: memory follows one hour of impressions, not a week's.
    hourly, rows = [], []
    for at in _hours_with_events(lake, lo, hi):
        a, b = max(at, lo), min(at + timedelta(hours=1), hi)
        part = Engagement.from_lake(lake, a, b, config.attribution)
        hourly.append(part.ctr(by=(), freq="1h"))
        mine = part.window(max(a, window[0]), b)
        rows.append(mine[mine["model_version"] == version])
    if not hourly:
        empty = Engagement.from_table(_EMPTY, lo, hi)
        hourly, rows = [empty.ctr(by=(), freq="1h")], [empty.frame]
    ref = drop_reference(pd.concat(hourly), pd.concat(rows), window, config)
    # A window whose clicks may still arrive is not cached.
    if window[1] + config.attribution <= now:
        if len(_REFERENCES) >= _MAX_REFERENCES:
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = ref
    return ref


def _hours_with_events(lake: Lake, lo: datetime, hi: datetime) -> list[datetime]:
    return [part.hour for part in lake.hours(lo, hi) if part.keys]


def _serving_version(engagement: Engagement, lo: datetime, hi: datetime) -> str | None:
    frame = engagement.window(lo, hi)
    if frame.empty:
        return None
    return str(frame["model_version"].value_counts().index[0])
