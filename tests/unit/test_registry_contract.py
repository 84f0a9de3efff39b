"""One contract suite for every ModelRegistry: file://, s3:// (moto) and sagemaker:// (moto).

moto implements the SageMaker model package APIs this backend calls (CreateModelPackageGroup,
CreateModelPackage, ListModelPackages, DescribeModelPackage, UpdateModelPackage), so the same
boto3 requests production sends are exercised here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from recloop.errors import ConfigError, NotFoundError
from recloop.registry import (
    ModelRegistry,
    ModelStatus,
    RegistryError,
    SageMakerRegistry,
    StoreRegistry,
    registry_from_uri,
)
from recloop.training.bundle import ModelBundle
from training_fixtures import register_test_family, saved_bundle


@pytest.fixture(autouse=True)
def _test_family(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_family(monkeypatch)


@pytest.fixture(params=["file", "s3", "sagemaker"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    if request.param == "file":
        yield registry_from_uri((tmp_path / "registry").as_uri())
        return
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        if request.param == "s3":
            yield registry_from_uri("s3://models/registry", s3_client=s3)
        else:
            yield registry_from_uri(
                "sagemaker://recloop-models?artifacts=s3://models/sm",
                s3_client=s3,
                sagemaker_client=boto3.client("sagemaker", region_name="us-east-1"),
            )


def _register(registry: ModelRegistry, tmp_path: Path, seed: int, recall: float) -> str:
    folder = saved_bundle(tmp_path / f"bundle-{seed}", seed=seed, metrics={"recall@10": recall})
    return registry.register(
        folder, {"recall@10": recall, "ndcg@10": recall / 2}, f"run-{seed}"
    ).version


def test_register_records_a_pending_version_with_metrics_and_lineage(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    folder = saved_bundle(tmp_path / "b", seed=1)
    version = registry.register(folder, {"recall@10": 0.31, "ndcg@10": 0.2}, "run-abc")
    assert version.status is ModelStatus.PENDING
    assert version.metrics == {"recall@10": pytest.approx(0.31), "ndcg@10": pytest.approx(0.2)}
    assert version.run_id == "run-abc"
    assert version.family == "test_cooccurrence"
    assert version.artifact_uri
    assert version.created_at
    again = registry.get(version.version)
    assert again.version == version.version and again.status is ModelStatus.PENDING


def test_nothing_is_champion_until_approved(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, 1, 0.1)
    assert registry.champion() is None


def test_versions_are_ordered_and_champion_is_newest_approved(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = _register(registry, tmp_path, 1, 0.1)
    v2 = _register(registry, tmp_path, 2, 0.2)
    v3 = _register(registry, tmp_path, 3, 0.3)
    assert [v.version for v in registry.list()] == [v1, v2, v3]
    assert int(v1) < int(v2) < int(v3)
    registry.approve(v1, "first model beats popularity")
    registry.approve(v2, "better than v1")
    rejected = registry.reject(v3, "worse on the holdout")
    champion = registry.champion()
    assert champion is not None and champion.version == v2
    assert rejected.status is ModelStatus.REJECTED and rejected.reason == "worse on the holdout"
    # Rejecting the champion rolls back to the previous approved version.
    registry.reject(v2, "lost online")
    champion = registry.champion()
    assert champion is not None and champion.version == v1
    statuses = {v.version: v.status for v in registry.list()}
    assert statuses == {
        v1: ModelStatus.APPROVED,
        v2: ModelStatus.REJECTED,
        v3: ModelStatus.REJECTED,
    }


def test_a_decision_keeps_metrics_and_records_reason(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    v1 = _register(registry, tmp_path, 1, 0.4)
    approved = registry.approve(v1, "gate: +12% recall@10", evidence={"diff": 0.05})
    assert approved.status is ModelStatus.APPROVED
    assert approved.reason == "gate: +12% recall@10"
    assert approved.decided_at
    assert approved.metrics["recall@10"] == pytest.approx(0.4)
    assert approved.run_id == "run-1"


def test_download_gives_a_loadable_verified_bundle(registry: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(registry, tmp_path, 5, 0.3)
    folder = registry.download(v1, tmp_path / "served" / v1)
    bundle = ModelBundle.load(folder)
    assert bundle.version == v1
    assert bundle.meta.run_id == "run-5"
    assert bundle.item_index("i4") == 4
    # A second download of the same version into the same place is a no-op.
    assert registry.download(v1, folder) == folder
    with pytest.raises(RegistryError, match="not empty"):
        registry.download(_register(registry, tmp_path, 6, 0.3), folder)


def test_unknown_versions_and_empty_reasons_are_refused(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        registry.get("99")
    with pytest.raises(NotFoundError):
        registry.approve("99", "why not")
    v1 = _register(registry, tmp_path, 1, 0.1)
    with pytest.raises(RegistryError, match="reason"):
        registry.approve(v1, "  ")
    with pytest.raises(RegistryError, match="bundle"):
        registry.register(tmp_path, {}, "run-x")


def test_registering_the_same_bundle_twice_gives_two_versions(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    folder = saved_bundle(tmp_path / "b", seed=1)
    first = registry.register(folder, {"recall@10": 0.1}, "run-1")
    second = registry.register(folder, {"recall@10": 0.1}, "run-1")
    assert first.version != second.version
    assert first.artifact_uri == second.artifact_uri  # content-addressed, uploaded once


# ---- backend-specific behaviour --------------------------------------------------------------


def test_file_registry_keeps_every_decision_as_an_audit_log(tmp_path: Path) -> None:
    registry = StoreRegistry.from_uri((tmp_path / "reg").as_uri())
    v1 = _register(registry, tmp_path, 1, 0.1)
    registry.approve(v1, "ok")
    registry.reject(v1, "rolled back")
    log = sorted((tmp_path / "reg" / "models" / v1 / "status").iterdir())
    assert len(log) == 2
    assert registry.get(v1).status is ModelStatus.REJECTED


def test_sagemaker_registry_writes_package_fields_sagemaker_shows(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        sm = boto3.client("sagemaker", region_name="us-east-1")
        registry = SageMakerRegistry(
            "recloop",
            "s3://models/sm",
            sagemaker_client=sm,
            s3_client=s3,
            image_uri="123.dkr.ecr.us-east-1.amazonaws.com/serve:1",
        )
        v1 = _register(registry, tmp_path, 1, 0.3)
        registry.approve(v1, "first model beats popularity", evidence={"lift": 0.2})
        summary = sm.list_model_packages(ModelPackageGroupName="recloop")[
            "ModelPackageSummaryList"
        ][0]
        package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        assert package["ModelApprovalStatus"] == "Approved"
        assert package["ApprovalDescription"] == "first model beats popularity"
        props = package["CustomerMetadataProperties"]
        assert props["run_id"] == "run-1" and props["metric:recall@10"] == "0.3"
        source = package["InferenceSpecification"]["Containers"][0]["ModelDataSource"]
        assert source["S3DataSource"]["S3Uri"].startswith("s3://models/sm/artifacts/")
        stats_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
        key = stats_uri.removeprefix("s3://models/")
        assert b"recall@10" in s3.get_object(Bucket="models", Key=key)["Body"].read()
        decision = props["decision_uri"].removeprefix("s3://models/")
        assert b'"lift"' in s3.get_object(Bucket="models", Key=decision)["Body"].read()


def test_registry_uris_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported"):
        registry_from_uri("ftp://x/y")
    with pytest.raises(ConfigError, match="artifacts"):
        registry_from_uri("sagemaker://group")
    with pytest.raises(RegistryError, match="s3://"):
        registry_from_uri("sagemaker://group?artifacts=file:///tmp/x")
    assert isinstance(registry_from_uri(str(tmp_path / "plain")), StoreRegistry)


def test_concurrent_downloads_of_one_version_to_one_place_all_succeed(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    registry = registry_from_uri((tmp_path / "reg").as_uri())
    version = _register(registry, tmp_path, 1, 0.2)
    dest = tmp_path / "cache" / version
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: registry.download(version, dest), range(12)))
    assert all(path == dest for path in results)
    assert ModelBundle.load(dest).version == version
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no staging left
