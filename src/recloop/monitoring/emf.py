"""CloudWatch Embedded Metric Format for the monitor: CTR per model version, alarm states,
decisions. Powertools builds and validates the EMF documents; this module only decides which
metrics exist and their dimensions, and returns JSON lines for the caller to write to stdout
(Lambda) or a log file (the loop), where CloudWatch Logs turns them into metrics.

CloudWatch alarms then watch, in namespace `recloop`:
- `CTR`, `Impressions`, `ClickedImpressions` by `model_version` (the current window);
- `AlarmState` by `detector`: 1 firing, 0 OK, nothing when a detector had too little data
  (so the alarm's missing-data treatment decides);
- `Decisions` by `action` (retrain, promote, rollback, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from recloop.monitoring.alarms import AlarmState
from recloop.monitoring.decisions import Decision
from recloop.monitoring.detectors import recent_window
from recloop.monitoring.monitor import MonitorReport

NAMESPACE = "recloop"


def _document(
    dimensions: dict[str, str],
    metrics: Iterable[tuple[str, MetricUnit, float]],
    metadata: dict[str, Any] | None = None,
    namespace: str = NAMESPACE,
    service: str = "monitor",
) -> str:
    emf = EphemeralMetrics(namespace=namespace, service=service)
    for name, value in dimensions.items():
        emf.add_dimension(name=name, value=value)
    for name, unit, number in metrics:
        emf.add_metric(name=name, unit=unit, value=number)
    for key, item in (metadata or {}).items():
        emf.add_metadata(key=key, value=item)
    return json.dumps(emf.serialize_metric_set(), separators=(",", ":"), default=str)


def report_emf(report: MonitorReport, namespace: str = NAMESPACE) -> list[str]:
    """EMF lines for one monitoring pass: CTR per version in the current window, alarm states."""
    lines = []
    engagement = report.engagement
    if engagement is not None:
        lo, hi = recent_window(report.now, report.config)
        for version in engagement.versions():
            counts = engagement.counts(version, lo, hi)
            if counts.impressions == 0:
                continue
            lines.append(
                _document(
                    {"model_version": version},
                    [
                        ("CTR", MetricUnit.NoUnit, counts.ctr),
                        ("Impressions", MetricUnit.Count, counts.impressions),
                        ("ClickedImpressions", MetricUnit.Count, counts.clicked),
                    ],
                    {"window_start": lo.isoformat(), "window_end": hi.isoformat()},
                    namespace,
                )
            )
    for alarm in report.alarms:
        if alarm.state is AlarmState.INSUFFICIENT_DATA:
            continue
        lines.append(
            _document(
                {"detector": alarm.detector},
                [("AlarmState", MetricUnit.Count, 1.0 if alarm.firing else 0.0)],
                {"summary": alarm.summary, "model_version": alarm.model_version},
                namespace,
            )
        )
    return lines


def decision_emf(decision: Decision, namespace: str = NAMESPACE) -> str:
    """One EMF line counting a decision by action (retrain, promote, rollback, ...)."""
    return _document(
        {"action": decision.action.value},
        [("Decisions", MetricUnit.Count, 1.0)],
        {
            "trigger": decision.trigger,
            "model_version": decision.model_version,
            "previous_version": decision.previous_version,
            "decision_id": decision.decision_id,
        },
        namespace,
        service="loop",
    )
