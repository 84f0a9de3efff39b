"""monitor: one pass of the retrain loop on each EventBridge schedule tick (or alarm event).

An adapter: "now" is the event's time (an EventBridge replay checks the time it replays), the
event id makes a redelivery change nothing, and recloop.loop.RetrainLoop.step does the rest
(alarms, guard window and rollback, cooldown, one SageMaker training job at a time). The
detectors' EMF lines go to stdout, where CloudWatch turns them into the CTR and AlarmState
metrics. Errors propagate, so EventBridge retries and the function's error alarm sees them.

Environment (Terraform's modules/training): RECLOOP_LAKE_URI, RECLOOP_REGISTRY_URI,
RECLOOP_REGISTRY_ARTIFACTS_URI, RECLOOP_MONITOR_DECISION_LOG_URI, RECLOOP_SAGEMAKER_*,
RECLOOP_MONITOR_* thresholds, POWERTOOLS_SERVICE_NAME.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CloudWatchAlarmEvent, EventBridgeEvent

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.loop import RetrainLoop, Trainer
from recloop.loop.wiring import build_loop
from recloop.monitoring.emf import report_emf

SERVICE = "monitor"
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))


def event_time(event: dict[str, Any]) -> datetime:
    """The time the event is about: EventBridge `time`, or the alarm's state timestamp."""
    if event.get("source") == "aws.cloudwatch" and "alarmData" in event:
        raw = CloudWatchAlarmEvent(event).alarm_data.state.timestamp or event.get("time")
    else:
        raw = EventBridgeEvent(event).get("time")
    if not raw:
        raise ConfigError("the event has no time")
    try:
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"event time {raw!r} is not ISO 8601") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class Monitor:
    """One container's loop, built once."""

    def __init__(
        self, settings: Settings, s3_client: Any = None, trainer: Trainer | None = None
    ) -> None:
        self.loop: RetrainLoop = build_loop(
            settings,
            s3_client=s3_client,
            trainer=trainer,
            # /tmp is all a Lambda may write; one folder per container, never shared.
            cache_dir=Path(tempfile.mkdtemp(prefix="recloop-loop-cache-")),
            require_sagemaker=True,
        )

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        step = self.loop.step(event_time(event), event_id=event.get("id"))
        if step.report is not None:
            for line in report_emf(step.report):
                sys.stdout.write(line + "\n")  # EMF goes to the function's log stream
        report = step.report
        summary = {
            "now": step.now.isoformat(),
            "source": event.get("source"),
            "model_version": step.champion,
            "skipped": step.skipped,
            "actions": step.actions(),
            "firing": [a.detector for a in report.firing] if report else [],
            "triggers": [a.detector for a in report.triggers()] if report else [],
            "alarms": {a.detector: a.state.value for a in report.alarms} if report else {},
        }
        logger.info("monitor pass", extra=summary)
        return summary


_monitor: Monitor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _monitor
    if _monitor is None:  # built on the first invocation, kept for the container's life
        _monitor = Monitor(Settings())
    return _monitor.handle(event)
