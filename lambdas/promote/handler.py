"""promote: a SageMaker training job's state change (EventBridge) -> the retrain loop's verdict.

An adapter: the job's name, status and failure reason go to recloop.loop.RetrainLoop.finish,
which gates the job's model against the champion as it stands now (the job registered it
without deciding), approves or rejects it, records the decision (so the next monitor pass opens
the guard window of a new champion) and gives the retrain lease back. A redelivered event
changes nothing. Serving's watcher picks up a new champion by itself.

Errors propagate: a completed job whose model is not registered yet raises, so EventBridge
retries; a failed gate raises, so the function's error alarm sees it.

Environment (Terraform's modules/training): RECLOOP_LAKE_URI, RECLOOP_REGISTRY_URI,
RECLOOP_REGISTRY_ARTIFACTS_URI, RECLOOP_MONITOR_DECISION_LOG_URI, RECLOOP_GATE_*,
RECLOOP_TRAIN_*, RECLOOP_SAGEMAKER_*.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.loop import RetrainLoop
from recloop.loop.wiring import build_loop

SERVICE = "promote"
DETAIL_TYPE = "SageMaker Training Job State Change"
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))


def job_of(event: dict[str, Any]) -> tuple[str, str, str | None]:
    """(training job name, status, failure reason) from the EventBridge event."""
    bridge = EventBridgeEvent(event)
    if bridge.source != "aws.sagemaker" or bridge.detail_type != DETAIL_TYPE:
        raise ConfigError(
            f"not a SageMaker training job state change: {bridge.source} / {bridge.detail_type}"
        )
    detail = bridge.detail
    name, status = detail.get("TrainingJobName"), detail.get("TrainingJobStatus")
    if not name or not status:
        raise ConfigError("the event's detail lacks TrainingJobName or TrainingJobStatus")
    return str(name), str(status), detail.get("FailureReason")


class Promoter:
    """One container's loop, built once."""

    def __init__(
        self, settings: Settings, s3_client: Any = None, sagemaker_client: Any = None
    ) -> None:
        self.loop: RetrainLoop = build_loop(
            settings,
            s3_client=s3_client,
            sagemaker_client=sagemaker_client,
            # /tmp is all a Lambda may write; one folder per container, never shared.
            cache_dir=Path(tempfile.mkdtemp(prefix="recloop-loop-cache-")),
        )

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        job, status, failure = job_of(event)
        decided = self.loop.finish(job, status, failure)
        summary = {
            "job": job,
            "status": status,
            "action": decided[0].action.value if decided else None,
            "version": decided[0].model_version if decided else None,
        }
        logger.info("training job decided", extra=summary)
        return summary


_promoter: Promoter | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _promoter
    if _promoter is None:  # built on the first invocation, kept for the container's life
        _promoter = Promoter(Settings())
    return _promoter.handle(event)
