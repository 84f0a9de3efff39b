"""Monitoring: engagement from the lake, detectors with evidence, decision log, dashboard.

Names load on first use (PEP 562): the API imports the light service-metrics module on every
worker, and must not pay for pandas and scipy.stats, which the detectors need, at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from recloop.monitoring.service_metrics import (
        ServiceMetricsLog,
        ServiceSnapshot,
        SnapshotRecorder,
    )

_EXPORTS = {
    "Alarm": "recloop.monitoring.alarms",
    "AlarmState": "recloop.monitoring.alarms",
    "DashboardData": "recloop.monitoring.dashboard",
    "collect_dashboard": "recloop.monitoring.dashboard",
    "render_dashboard": "recloop.monitoring.dashboard",
    "Action": "recloop.monitoring.decisions",
    "Decision": "recloop.monitoring.decisions",
    "DecisionLog": "recloop.monitoring.decisions",
    "ENGAGEMENT_DROP": "recloop.monitoring.detectors",
    "SILENT_STREAM": "recloop.monitoring.detectors",
    "STALE_MODEL": "recloop.monitoring.detectors",
    "TRAFFIC_DRIFT": "recloop.monitoring.detectors",
    "MonitorConfig": "recloop.monitoring.detectors",
    "engagement_drop": "recloop.monitoring.detectors",
    "silent_stream": "recloop.monitoring.detectors",
    "stale_model": "recloop.monitoring.detectors",
    "traffic_drift": "recloop.monitoring.detectors",
    "two_proportion_ztest": "recloop.monitoring.detectors",
    "Counts": "recloop.monitoring.engagement",
    "Engagement": "recloop.monitoring.engagement",
    "MonitorError": "recloop.monitoring.errors",
    "ModelInfo": "recloop.monitoring.monitor",
    "MonitorReport": "recloop.monitoring.monitor",
    "last_event_time": "recloop.monitoring.monitor",
    "run_checks": "recloop.monitoring.monitor",
    "ServiceMetricsLog": "recloop.monitoring.service_metrics",
    "ServiceSnapshot": "recloop.monitoring.service_metrics",
    "SnapshotRecorder": "recloop.monitoring.service_metrics",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
