"""Monitoring: engagement from the lake, detectors with evidence, decision log, dashboard."""

from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.dashboard import DashboardData, collect_dashboard, render_dashboard
from recloop.monitoring.decisions import Action, Decision, DecisionLog
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
from recloop.monitoring.service_metrics import ServiceMetricsLog, ServiceSnapshot, SnapshotRecorder

__all__ = [
    "ENGAGEMENT_DROP",
    "SILENT_STREAM",
    "STALE_MODEL",
    "TRAFFIC_DRIFT",
    "Action",
    "Alarm",
    "AlarmState",
    "Counts",
    "DashboardData",
    "Decision",
    "DecisionLog",
    "Engagement",
    "ModelInfo",
    "MonitorConfig",
    "MonitorError",
    "MonitorReport",
    "ServiceMetricsLog",
    "ServiceSnapshot",
    "SnapshotRecorder",
    "collect_dashboard",
    "engagement_drop",
    "last_event_time",
    "render_dashboard",
    "run_checks",
    "silent_stream",
    "stale_model",
    "traffic_drift",
    "two_proportion_ztest",
]
