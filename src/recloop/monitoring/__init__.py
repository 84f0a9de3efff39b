"""Monitoring: engagement from the lake, detectors with evidence, decision log, dashboard."""

from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.detectors import (
    ENGAGEMENT_DROP,
    SILENT_STREAM,
    STALE_MODEL,
    TRAFFIC_DRIFT,
    MonitorConfig,
    engagement_drop,
    silent_stream,
    stale_model,
    traffic_drift,
    two_proportion_ztest,
)
from recloop.monitoring.engagement import Counts, Engagement
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.monitor import ModelInfo, MonitorReport, last_event_time, run_checks

__all__ = [
    "ENGAGEMENT_DROP",
    "SILENT_STREAM",
    "STALE_MODEL",
    "TRAFFIC_DRIFT",
    "Alarm",
    "AlarmState",
    "Counts",
    "Engagement",
    "ModelInfo",
    "MonitorConfig",
    "MonitorError",
    "MonitorReport",
    "engagement_drop",
    "last_event_time",
    "run_checks",
    "silent_stream",
    "stale_model",
    "traffic_drift",
    "two_proportion_ztest",
]
