"""lambdas/monitor on moto S3 (lake, registry, decision log): real EventBridge and CloudWatch
alarm event shapes from ../shared/aws-events, EMF captured from stdout."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from recloop.config import Settings
from recloop.events import EVENT_SCHEMA
from recloop.lake import Lake
from recloop.monitoring.champion import champion_info
from recloop.monitoring.decisions import Action, DecisionLog
from recloop.registry import StoreRegistry
from training_fixtures import register_test_family, saved_bundle

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "monitor" / "handler.py"
# Loaded under its own name: other Lambdas' tests import a module called "handler" too.
_spec = importlib.util.spec_from_file_location("monitor_handler", HANDLER)
assert _spec is not None and _spec.loader is not None
monitor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(monitor)


@pytest.fixture(autouse=True)
def _test_family(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_family(monkeypatch)


def _traffic(start: datetime, minutes: int, ctr: Any, version: str, seed: int = 0) -> Any:
    # Items and users the toy bundle knows (i0..i19, u0..u39), so drift stays quiet.
    rng = np.random.default_rng(seed)
    n = int(minutes * 12)
    offsets = np.sort(rng.uniform(0, minutes, n))
    rows = []
    for i, off in enumerate(offsets):
        ts = start + timedelta(minutes=float(off))
        items = [f"i{x}" for x in rng.choice(20, 5, replace=False)]
        user = f"u{rng.integers(40)}"
        rec = f"r{seed}-{i}"
        rows.append(
            {"event_id": f"e{seed}-{i}", "event_type": "impression", "timestamp": ts,
             "user_id": user, "item_ids": items, "rec_id": rec, "model_version": version,
             "schema_version": 2}
        )  # fmt: skip
        if rng.random() < (ctr(off) if callable(ctr) else ctr):
            click_ts = ts + timedelta(seconds=5)
            rows.append(
                {"event_id": f"c{seed}-{i}", "event_type": "click", "timestamp": click_ts,
                 "user_id": user, "item_id": items[0], "rec_id": rec, "schema_version": 2}
            )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


@pytest.fixture
def world(s3_bucket: tuple[Any, str], tmp_path: Path) -> tuple[Any, Settings, StoreRegistry]:
    client, bucket = s3_bucket
    settings = Settings(
        lake_uri=f"s3://{bucket}/lake",
        registry_uri=f"s3://{bucket}/registry",
        monitor_drift_min_events=50,
    )
    registry = StoreRegistry.from_uri(settings.registry_uri, s3_client=client)
    version = registry.register(saved_bundle(tmp_path / "bundle"), {"recall@10": 0.5}, "run-0")
    registry.approve(version.version, "first model")
    return client, settings, registry


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_schedule_event_finds_a_drop_records_the_alarm_and_prints_emf(
    world: tuple[Any, Settings, StoreRegistry],
    aws_event: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, settings, registry = world
    champion = champion_info(registry, known_ids=True)
    assert champion is not None and champion.promoted_at is not None
    assert list(champion.known_items)[:2] == ["i0", "i1"]  # type: ignore[arg-type]
    start = champion.promoted_at
    lake = Lake.from_uri(settings.lake_uri, s3_client=client)
    # 20% CTR for the model's first 6 h, then 10%; checked at 7 h 15 min.
    lake.write_events(_traffic(start, 435, lambda m: 0.2 if m < 360 else 0.1, champion.version),
                      "b1")  # fmt: skip
    event = aws_event("eventBridgeEvent.json")
    event["time"] = (start + timedelta(hours=7, minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    jobs = JobRecorder()
    result = monitor.Monitor(settings, s3_client=client, trainer=jobs).handle(event)
    assert result["triggers"] == ["engagement_drop"]
    assert result["alarms"]["traffic_drift"] == "OK" and result["alarms"]["stale_model"] == "OK"
    assert result["actions"] == ["alarm", "retrain"] and len(jobs.started) == 1
    decisions = DecisionLog.from_settings(settings, s3_client=client).list()
    assert [d.action for d in decisions] == [Action.ALARM, Action.RETRAIN]
    assert decisions[0].evidence["evidence"]["crossed_at"] is not None
    assert decisions[1].previous_version == champion.version
    assert decisions[1].evidence["job"] == jobs.started[0]
    docs = _emf(capsys.readouterr().out)
    assert {d["detector"]: d["AlarmState"] for d in docs if "AlarmState" in d}[
        "engagement_drop"
    ] == [1.0]
    assert any(d.get("model_version") == champion.version and "CTR" in d for d in docs)


def test_real_event_times_are_used_as_now(
    world: tuple[Any, Settings, StoreRegistry],
    aws_event: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, settings, _ = world
    handler = monitor.Monitor(settings, s3_client=client, trainer=JobRecorder())
    # The shared EventBridge sample is a replay from 2017: the lake had nothing then.
    scheduled = handler.handle(aws_event("eventBridgeEvent.json"))
    assert scheduled["now"] == "2017-12-22T18:43:48+00:00"
    assert scheduled["firing"] == ["silent_stream"] and scheduled["triggers"] == []
    alarm = handler.handle(aws_event("cloudWatchAlarmEventSingleMetric.json"))
    assert alarm["now"] == "2024-02-17T11:53:08.431000+00:00"
    assert alarm["source"] == "aws.cloudwatch"
    # The alarm was recorded once, when it started firing; the CloudWatch event saw it firing.
    logged = DecisionLog.from_settings(settings, s3_client=client).list()
    assert [(d.action, d.trigger) for d in logged] == [(Action.ALARM, "silent_stream")]
    assert monitor.event_time({"source": "aws.events", "time": "2026-01-01T00:00:00Z"}) == (
        datetime(2026, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(monitor.ConfigError):
        monitor.event_time({"source": "aws.events"})
    with pytest.raises(monitor.ConfigError):
        monitor.event_time({"time": "yesterday"})
    capsys.readouterr()


def test_the_monitor_retrains_with_sagemaker_or_refuses_to_start(
    world: tuple[Any, Settings, StoreRegistry],
) -> None:
    from recloop.loop import SageMakerTrainer

    client, settings, _ = world
    with pytest.raises(monitor.ConfigError, match="SAGEMAKER_TRAINING_IMAGE_URI"):
        monitor.Monitor(settings, s3_client=client)
    configured = settings.model_copy(
        update={
            "sagemaker_role_arn": "arn:aws:iam::123456789012:role/recloop-training",
            "sagemaker_training_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1",
            "sagemaker_output_uri": "s3://recloop-test-lake/jobs",
        }
    )
    trainer = monitor.Monitor(configured, s3_client=client).loop.trainer
    assert isinstance(trainer, SageMakerTrainer)
    assert trainer.job_name().startswith("recloop-train-")  # Terraform's IAM name pattern


class JobRecorder:
    """A trainer whose jobs run elsewhere (as SageMaker's): it records what was started."""

    kind = "recorded"
    lease_ttl = timedelta(hours=7)

    def __init__(self) -> None:
        self.started: list[str] = []

    def job_name(self) -> str:
        return f"recloop-train-{len(self.started):08d}"

    def start(self, job: str, options: Any, context: dict[str, Any]) -> None:
        self.started.append(job)
