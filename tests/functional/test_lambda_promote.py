"""lambdas/promote on moto S3: a SageMaker training job's state change -> gate -> decision.

The event is the real EventBridge envelope from ../shared/aws-events with the documented
"SageMaker Training Job State Change" source, detail-type and detail fields (the shared folder
has no SageMaker sample). Lake, registry and decision log live in one moto bucket, as in AWS.
"""

from __future__ import annotations

import copy
import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recloop.config import Settings
from recloop.errors import ConfigError, NotFoundError
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.monitoring.decisions import Action
from recloop.registry import ModelStatus
from recloop.sim import World, WorldConfig
from recloop.training.pipeline import TrainOptions, train
from recloop.training.runs import RunTracker

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "promote" / "handler.py"
# Loaded under its own name: other Lambdas' tests import a module called "handler" too.
_spec = importlib.util.spec_from_file_location("promote_handler", HANDLER)
assert _spec is not None and _spec.loader is not None
promote = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(promote)

NOW = datetime.now(UTC).replace(microsecond=0)
JOB = "recloop-train-2026-11-27-03-00-00-123"


def _job_event(envelope: dict[str, Any], status: str, **detail: Any) -> dict[str, Any]:
    event = copy.deepcopy(envelope)
    event["source"] = "aws.sagemaker"
    event["detail-type"] = "SageMaker Training Job State Change"
    event["resources"] = [f"arn:aws:sagemaker:us-east-1:111122223333:training-job/{JOB}"]
    event["detail"] = {
        "TrainingJobName": JOB,
        "TrainingJobArn": event["resources"][0],
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://recloop-test-lake/jobs/{JOB}/model.tar.gz"},
        "HyperParameters": {"families": '["als"]'},
        **detail,
    }
    return event


@pytest.fixture
def promoter(s3_bucket: tuple[Any, str]) -> Any:
    client, bucket = s3_bucket
    settings = Settings(
        lake_uri=f"s3://{bucket}/lake",
        registry_uri=f"s3://{bucket}/registry",
        train_holdout_days=0.5,
        gate_bootstrap_samples=200,
    )
    world = World(
        WorldConfig(
            seed=5,
            start=NOW - timedelta(days=2),
            n_users=200,
            n_items=120,
            n_visitors=0,
            n_bots=0,
            sessions_per_user_day=3.0,
            views_per_session=5.0,
            taste_weight=8.0,
        )
    )
    lake = Lake.from_uri(settings.lake_uri, s3_client=client)
    Ingestor(lake, settings).ingest_events(world.generate(world.start, NOW).tracker_records(), "h")
    return promote.Promoter(settings, s3_client=client)


def _register(promoter: Any, run_id: str, factors: int = 8) -> str:
    """Register a model as a training job that leaves the decision to this Lambda would: the
    pipeline under the job's name, the refit registered PendingManualApproval with the holdout
    evaluation of its fit before the holdout beside it."""
    # min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
    options = TrainOptions(
        min_holdout_users=1,
        families=("als",),
        params={"factors": factors, "iterations": 6, "regularization": 0.2},
        holdout_days=0.5,
        validation_days=0.5,
        search_budget=1,
    )
    registry = promoter.loop.registry
    result = train(
        options,
        promoter.loop.lake,
        registry,
        RunTracker.for_registry(registry),
        run_id=run_id,
        apply_decision=False,
    )
    assert result.version is not None and result.version.status is ModelStatus.PENDING
    return str(result.version.version)


def test_a_completed_job_with_a_pending_model_is_gated_and_promoted(
    promoter: Any, aws_event: Any
) -> None:
    version = _register(promoter, JOB)

    summary = promoter.handle(_job_event(aws_event("eventBridgeEvent.json"), "Completed"))

    assert summary == {"job": JOB, "status": "Completed", "action": "promote", "version": version}
    approved = promoter.loop.registry.get(version)
    assert approved.status is ModelStatus.APPROVED
    assert approved.evidence["incumbent"] == "popularity"
    # The challenger's side is the fit before the holdout (the registered holdout metrics),
    # not the registered refit scored on a holdout it has seen.
    assert approved.evidence["challenger"] == approved.metrics["recall@10"]
    [decision] = promoter.loop.decisions.list()
    assert decision.action is Action.PROMOTE and decision.model_version == version
    assert decision.previous_version is None
    assert decision.evidence["job"] == JOB and decision.evidence["bootstrap"]["lower"] > 0
    # EventBridge delivers at least once: the same event again changes nothing.
    again = promoter.handle(_job_event(aws_event("eventBridgeEvent.json"), "Completed"))
    assert again["action"] is None and len(promoter.loop.decisions.list()) == 1


def test_a_model_the_job_already_gated_is_recorded_as_decided(
    promoter: Any, aws_event: Any
) -> None:
    first = _register(promoter, "an-earlier-job")
    promoter.loop.registry.approve(first, "first model", {})
    version = _register(promoter, JOB)
    promoter.loop.registry.reject(
        version, "rejected (improvement below the margin)", {"metric": "x"}
    )

    summary = promoter.handle(_job_event(aws_event("eventBridgeEvent.json"), "Completed"))

    assert summary["action"] == "reject"
    [decision] = promoter.loop.decisions.list()
    assert decision.action is Action.REJECT and decision.previous_version == first
    assert decision.detail == "rejected (improvement below the margin)"
    assert promoter.loop.registry.champion().version == first


def test_a_failed_job_is_held_with_its_reason(promoter: Any, aws_event: Any) -> None:
    event = _job_event(
        aws_event("eventBridgeEvent.json"), "Failed", FailureReason="AlgorithmError: out of memory"
    )

    summary = promoter.handle(event)

    assert summary["action"] == "hold"
    [decision] = promoter.loop.decisions.list()
    assert decision.action is Action.HOLD and "out of memory" in decision.detail
    assert promoter.loop.registry.list() == []


def test_a_completed_job_without_a_registered_model_raises_for_a_retry(
    promoter: Any, aws_event: Any
) -> None:
    with pytest.raises(NotFoundError, match=JOB):
        promoter.handle(_job_event(aws_event("eventBridgeEvent.json"), "Completed"))
    assert promoter.loop.decisions.list() == []


def test_other_events_are_refused(aws_event: Any) -> None:
    with pytest.raises(ConfigError, match="not a SageMaker training job"):
        promote.job_of(aws_event("eventBridgeEvent.json"))
    incomplete = _job_event(aws_event("eventBridgeEvent.json"), "Completed")
    del incomplete["detail"]["TrainingJobStatus"]
    with pytest.raises(ConfigError, match="TrainingJobStatus"):
        promote.job_of(incomplete)
