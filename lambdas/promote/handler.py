"""promote: a SageMaker training job's state change (EventBridge) -> gate -> approve or reject.

The job registers its model under its run id, which is the training job's name. This handler
only adapts the event:
- Completed, version still PendingManualApproval: the gate compares it with the champion on
  the holdout of the job's run and approves or rejects it (recloop.loop.gate_version ->
  recloop.training.pipeline.gate_registered). The registered model was refitted with that
  holdout, so its side is the holdout evaluation of the fit before the holdout that the run
  kept in the bundle; the champion is scored on the same users and lake objects;
- Completed, already decided by the job's own gate: the decision is recorded as it stands;
- Failed or Stopped: a `hold` decision with the failure reason (nothing to promote).
Every outcome becomes a decision in the loop's decision log (promote, reject, hold), so the
next monitor pass opens the guard window for a new champion. Serving's watcher picks up the
new champion by itself.

Errors propagate: a completed job whose model is not registered yet raises, so EventBridge
retries; a failed gate raises, so the Lambda's error alarm sees it.

Environment: RECLOOP_LAKE_URI, RECLOOP_REGISTRY_URI (+ RECLOOP_REGISTRY_ARTIFACTS_URI for
sagemaker://), RECLOOP_GATE_*, RECLOOP_TRAIN_*, RECLOOP_MONITOR_DECISION_LOG_URI.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

from recloop.config import Settings
from recloop.errors import ConfigError, NotFoundError
from recloop.lake import Lake
from recloop.loop import LoopConfig
from recloop.loop.training import gate_version
from recloop.monitoring.decisions import Action, DecisionLog
from recloop.registry import ModelRegistry, ModelStatus, ModelVersion, registry_from_uri

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
    """One container's promoter: settings, lake, registry and decision log, created once."""

    def __init__(self, settings: Settings, s3_client: Any = None, sagemaker_client: Any = None):
        self.settings = settings
        self.lake = Lake.from_uri(settings.lake_uri, s3_client=s3_client)
        self.registry: ModelRegistry = registry_from_uri(
            settings.registry_uri,
            s3_client=s3_client,
            sagemaker_client=sagemaker_client,
            artifacts_uri=settings.registry_artifacts_uri,
        )
        self.decisions = DecisionLog.from_settings(settings, s3_client=s3_client)
        self.config = LoopConfig.from_settings(settings)

    def _version_of(self, job: str) -> ModelVersion:
        found = [v for v in self.registry.list() if v.run_id == job]
        if not found:
            raise NotFoundError(f"training job {job} has no registered model version (yet)")
        return found[-1]

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        job, status, failure = job_of(event)
        if status in ("InProgress", "Stopping"):
            return {"job": job, "status": status, "action": None}
        previous = self.registry.champion()
        before = previous.version if previous else None
        if status != "Completed":
            self.decisions.record(
                Action.HOLD,
                "training_job",
                previous_version=before,
                evidence={"job": job, "status": status, "failure_reason": failure},
                detail=f"training job {job} {status.lower()}: {failure or 'no reason given'}",
            )
            return {"job": job, "status": status, "action": Action.HOLD.value}
        version = self._version_of(job)
        if version.status is ModelStatus.PENDING:
            version, decision = gate_version(
                self.lake, self.registry, version.version, self.config.train, self.config.gate
            )
            evidence, reason = decision.evidence, decision.reason
        else:
            evidence, reason = version.evidence, version.reason or ""
        approved = version.status is ModelStatus.APPROVED
        action = Action.PROMOTE if approved else Action.REJECT
        self.decisions.record(
            action,
            "gate",
            model_version=version.version,
            previous_version=before,
            metrics=version.metrics,
            evidence={**evidence, "job": job},
            detail=reason,
        )
        summary = {"job": job, "status": status, "action": action.value, "version": version.version}
        logger.info("training job decided", extra=summary)
        return summary


_promoter: Promoter | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _promoter
    if _promoter is None:  # built on the first invocation, kept for the container's life
        _promoter = Promoter(Settings())
    return _promoter.handle(event)
