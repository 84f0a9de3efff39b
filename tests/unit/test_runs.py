"""RunTracker: complete run records under the registry root, mirrored to SageMaker Experiments."""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import orjson
import pytest
from moto import mock_aws

from recloop.errors import NotFoundError
from recloop.lake import LocalStore, ManifestEntry, Snapshot
from recloop.registry import registry_from_uri
from recloop.training.runs import RunError, RunTracker, SageMakerExperiments, git_info


def _snapshot() -> Snapshot:
    return Snapshot(
        "file:///lake",
        "2026-01-01T00:00:00+00:00",
        None,
        [ManifestEntry("events/dt=2026-01-01/hour=00/a.parquet", 10, "ab" * 32, 5)],
    )


def test_a_run_records_code_data_config_seeds_metrics_timings_artifacts_and_log(
    tmp_path: Path,
) -> None:
    tracker = RunTracker(LocalStore(tmp_path / "reg"))
    with tracker.start({"families": ["als"]}, seeds={"search": 7}) as run:
        with run.timer("fit"):
            logging.getLogger("recloop.training.test").info("fitting als")
        run.set_snapshot(_snapshot())
        run.log_params({"als": {"factors": 8}})
        run.log_metrics({"recall@10": 0.25}, prefix="holdout.")
        run.add_artifact("bundle", "file:///reg/artifacts/x")
        run.set_result("gate", {"approved": False})
    record = tracker.get(run.run_id)
    assert record.status == "succeeded" and record.finished_at
    assert record.git["source"] == "git" and len(record.git["sha"]) == 40
    assert isinstance(record.git["dirty"], bool)
    assert {"python", "numpy", "implicit", "recloop"} <= set(record.packages)
    assert record.config == {"families": ["als"]} and record.seeds == {"search": 7}
    assert record.snapshot is not None and record.snapshot["digest"] == _snapshot().digest
    assert record.metrics == {"holdout.recall@10": 0.25}
    assert record.timings["fit"] >= 0 and record.cpu_seconds["fit"] >= 0
    assert record.peak_rss_mb["fit"] > 10  # MB: this interpreter alone is bigger
    assert record.artifacts["bundle"] == "file:///reg/artifacts/x"
    assert record.results["gate"] == {"approved": False}
    assert "fitting als" in tracker.log_text(run.run_id)
    assert record.log_uri and record.log_uri.endswith(f"runs/{run.run_id}/run.log")
    on_disk = orjson.loads((tmp_path / "reg" / "runs" / run.run_id / "run.json").read_bytes())
    assert on_disk["run_id"] == run.run_id


def test_a_failed_run_is_recorded_as_failed_and_the_error_propagates(tmp_path: Path) -> None:
    tracker = RunTracker(LocalStore(tmp_path / "reg"))
    with pytest.raises(ValueError, match="boom"), tracker.start({}, run_id="r-failed"):
        raise ValueError("boom")
    record = tracker.get("r-failed")
    assert record.status == "failed" and record.error == "ValueError: boom"


def test_runs_are_listed_in_order_and_ids_are_unique_and_valid(tmp_path: Path) -> None:
    tracker = RunTracker(LocalStore(tmp_path / "reg"))
    with tracker.start({}, run_id="r-1"):
        pass
    with tracker.start({}, run_id="r-2"):
        pass
    assert [r.run_id for r in tracker.list()] == ["r-1", "r-2"]
    with pytest.raises(RunError, match="already"), tracker.start({}, run_id="r-1"):
        pass
    with pytest.raises(RunError, match="letters"), tracker.start({}, run_id="bad id/x"):
        pass
    with pytest.raises(NotFoundError):
        tracker.get("r-3")


def test_git_info_without_a_repository_falls_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_GIT_SHA", "abc123")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git binary
    assert git_info(tmp_path) == {"sha": "abc123", "dirty": None, "source": "env"}


def test_a_sagemaker_registry_mirrors_runs_into_experiments() -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        sm = boto3.client("sagemaker", region_name="us-east-1")
        metrics = boto3.client("sagemaker-metrics", region_name="us-east-1")
        registry = registry_from_uri(
            "sagemaker://recloop-models?artifacts=s3://models/sm", s3_client=s3, sagemaker_client=sm
        )
        experiments = SageMakerExperiments("recloop-models", client=sm, metrics_client=metrics)
        tracker = RunTracker.for_registry(registry, experiments=experiments)
        with tracker.start({"k": 10}, seeds={"search": 1}, run_id="r-sm") as run:
            run.set_snapshot(_snapshot())
            run.log_params({"als": {"factors": 8}, "family": "als"})
            run.log_metrics({"recall@10": 0.3, "ndcg@10": 0.2})
            run.add_artifact("bundle", "s3://models/sm/artifacts/r-sm-x")
        # The record sits beside the models in S3 ...
        assert tracker.get("r-sm").metrics["recall@10"] == pytest.approx(0.3)
        # ... and in SageMaker Experiments, with parameters, artifacts and metrics.
        trial = sm.describe_trial(TrialName="r-sm")
        assert trial["ExperimentName"] == "recloop-models"
        component = sm.describe_trial_component(TrialComponentName="r-sm")
        params = component["Parameters"]
        assert params["param.als.factors"] == {"NumberValue": 8.0}
        assert params["param.family"] == {"StringValue": "als"}
        assert params["snapshot_digest"]["StringValue"] == _snapshot().digest
        assert component["Status"]["PrimaryStatus"] == "Completed"
        assert component["OutputArtifacts"]["bundle"]["Value"].startswith("s3://models/sm/")
        names = {m["MetricName"] for m in component["Metrics"]}
        assert names == {"recall@10", "ndcg@10"}
        listed = sm.list_trial_components(TrialName="r-sm")["TrialComponentSummaries"]
        assert [c["TrialComponentName"] for c in listed] == ["r-sm"]


def test_a_failing_experiments_mirror_does_not_fail_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with mock_aws():
        sm = boto3.client("sagemaker", region_name="us-east-1")
        # No trial component can be created for metrics on a component that does not exist:
        # a metrics client in another region sees none, so BatchPutMetrics reports errors.
        metrics = boto3.client("sagemaker-metrics", region_name="eu-west-1")
        tracker = RunTracker(LocalStore(tmp_path / "reg"), SageMakerExperiments("x", sm, metrics))
        with caplog.at_level(logging.WARNING), tracker.start({}, run_id="r-mirror") as run:
            run.log_metrics({"recall@10": 0.1})
    assert tracker.get("r-mirror").status == "succeeded"
    assert "not mirrored" in caplog.text
