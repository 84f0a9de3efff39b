"""monitor: an EventBridge schedule (or a CloudWatch alarm's state change) runs the detectors.

The handler only adapts: it takes "now" from the event (so that an EventBridge replay checks
the time it replays), runs recloop.monitoring.run_checks on the registry's champion, prints
the EMF lines (CloudWatch turns them into the CTR and AlarmState metrics that the alarms
watch), and appends an `alarm` decision with the evidence when a retrain trigger fires.
Starting the SageMaker training job on a trigger is the loop's part: pass `on_trigger`.

A CloudWatch alarm event (e.g. the SNS-notifying alarm on AlarmState) re-runs the checks at
the alarm's time, so the alarm's log line carries the detectors' evidence.

Errors propagate: a failed check must fail the invocation, so that EventBridge retries and
the Lambda's error metric (and its alarm) see it.

Environment: RECLOOP_LAKE_URI, RECLOOP_REGISTRY_URI, RECLOOP_MONITOR_* thresholds,
POWERTOOLS_METRICS_NAMESPACE (default "recloop"), POWERTOOLS_SERVICE_NAME.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import CloudWatchAlarmEvent, EventBridgeEvent

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.lake import Lake
from recloop.monitoring import MonitorConfig, MonitorReport, run_checks
from recloop.monitoring.champion import champion_info
from recloop.monitoring.decisions import Action, Decision, DecisionLog
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
    """One container's monitor: settings, lake, registry and decision log, created once."""

    def __init__(
        self,
        settings: Settings,
        s3_client: Any = None,
        on_trigger: Callable[[MonitorReport], None] | None = None,
    ) -> None:
        from recloop.registry import registry_from_uri

        self.settings = settings
        self.lake = Lake.from_uri(settings.lake_uri, s3_client=s3_client)
        self.registry = registry_from_uri(
            settings.registry_uri,
            s3_client=s3_client,
            artifacts_uri=settings.registry_artifacts_uri,
        )
        self.decisions = DecisionLog.from_settings(settings, s3_client=s3_client)
        self.config = MonitorConfig.from_settings(settings)
        self.on_trigger = on_trigger

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        now = event_time(event)
        model = champion_info(self.registry, known_ids=True)
        report = run_checks(self.lake, model, now, self.config)
        for line in report_emf(report):
            sys.stdout.write(line + "\n")  # EMF goes to the function's log stream
        triggers = report.triggers()
        if triggers:
            self.decisions.append(
                Decision(
                    Action.ALARM,
                    triggers[0].detector,
                    model_version=report.model_version,
                    evidence={a.detector: a.evidence for a in triggers},
                    detail="; ".join(a.summary for a in triggers),
                    at=now,
                )
            )
            if self.on_trigger is not None:
                self.on_trigger(report)
        summary = {
            "now": now.isoformat(),
            "source": event.get("source"),
            "model_version": report.model_version,
            "firing": [a.detector for a in report.firing],
            "triggers": [a.detector for a in triggers],
            "alarms": {a.detector: a.state.value for a in report.alarms},
        }
        logger.info("monitor pass", extra=summary)
        return summary


_monitor: Monitor | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _monitor
    if _monitor is None:  # built on the first invocation, kept for the container's life
        _monitor = build_monitor(Settings())
    return _monitor.handle(event)


def build_monitor(settings: Settings, s3_client: Any = None) -> Monitor:
    """The monitor, starting a SageMaker training job on a retrain trigger when configured."""
    monitor = Monitor(settings, s3_client=s3_client)
    if settings.sagemaker_training_image_uri and settings.sagemaker_role_arn:
        from recloop.loop.aws import TrainingJobStarter

        monitor.on_trigger = TrainingJobStarter(settings, monitor.decisions)
    else:
        logger.warning(
            "RECLOOP_SAGEMAKER_TRAINING_IMAGE_URI or _ROLE_ARN unset: alarms only, no retraining"
        )
    return monitor
