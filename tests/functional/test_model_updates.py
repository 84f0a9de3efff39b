"""Hot swap under faults: transient download errors are retried, unsafe artifacts rejected.

The registries are real (file:// on disk, s3:// through boto3 against moto); only the failure
of a download is injected, by a registry that raises the object store's own transient error a
given number of times before delegating to the real one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from recloop.errors import TransientStoreError
from recloop.registry import ArtifactError, ModelStatus, ModelVersion, registry_from_uri
from recloop.registry.base import _inside
from recloop.serving.app import create_app
from recloop.serving.hotswap import DOWNLOAD_ATTEMPTS, ModelHolder, Watcher, cache_folder
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import fit_bundle, publish, tiny_world, world_settings


class FlakyRegistry:
    """A real registry whose next `failures` downloads raise the store's transient error."""

    def __init__(self, registry: Any, failures: int = 0) -> None:
        self.registry = registry
        self.uri = registry.uri
        self.failures = failures
        self.attempts = 0

    def champion(self) -> Any:
        return self.registry.champion()

    def download(self, version: str, dest: Path) -> Path:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise TransientStoreError(f"get artifacts of {version}: SlowDown")
        path: Path = self.registry.download(version, dest)
        return path


def test_a_transient_download_error_is_retried_and_never_blacklists_the_champion(
    tmp_path: Path,
) -> None:
    world = tiny_world(tmp_path / "w")
    flaky = FlakyRegistry(world.registry)
    settings = world_settings(world, watch_interval_seconds=3600)
    runtime = build_runtime(settings, registry=flaky)
    assert runtime.watcher is not None
    runtime.watcher.backoff_s = 0.01
    with TestClient(create_app(settings, runtime)) as client:
        assert client.get("/version").json()["model_version"] == world.version
        new = publish(world.registry, fit_bundle(tmp_path / "new", seed=3))
        # Two failures: the backoff inside one poll gets through.
        flaky.failures, flaky.attempts = 2, 0
        assert runtime.watcher.check_once() is not None
        assert flaky.attempts == 3
        assert client.get("/version").json()["model_version"] == new
        # An outage longer than one poll's attempts: nothing swapped, nothing marked...
        newer = publish(world.registry, fit_bundle(tmp_path / "newer", seed=4))
        flaky.failures, flaky.attempts = DOWNLOAD_ATTEMPTS + 1, 0
        assert runtime.watcher.check_once() is None
        assert flaky.attempts == DOWNLOAD_ATTEMPTS
        version = client.get("/version").json()
        assert version["model_version"] == new and version["rejected_versions"] == []
        metrics = client.get("/metrics").text
        assert "recloop_model_download_errors_total 1.0" in metrics
        assert "recloop_model_rejected_total{" not in metrics
        # ...and the next poll, once the store answers, serves the champion.
        assert runtime.watcher.check_once() is not None
        assert client.get("/version").json()["model_version"] == newer


@pytest.mark.parametrize("version", ["..", ".", "../x", "a/../../b", "/etc", "v1"])
def test_the_cache_folder_of_any_version_name_is_inside_the_cache(
    tmp_path: Path, version: str
) -> None:
    folder = cache_folder(tmp_path / "cache", version)
    assert folder.parent == tmp_path / "cache"
    assert folder.name not in {".", ".."}


@pytest.fixture()
def s3() -> Any:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="models")
        yield client


def test_registry_downloads_never_follow_dot_dot_or_absolute_keys(tmp_path: Path, s3: Any) -> None:
    registry = registry_from_uri("s3://models/registry", s3_client=s3)
    version = publish(registry, fit_bundle(tmp_path / "bundle", seed=1))
    artifact = registry.get(version).artifact_uri.removeprefix("s3://models/")
    # S3 keys are names: "..", "/" and "\" are plain characters that a careless copy turns into
    # a path outside the cache.
    cache = tmp_path / "cache"
    for name in ("../../escaped.txt", "/abs.txt", "ok/../../../escaped.txt", "..\\win.txt"):
        s3.put_object(Bucket="models", Key=f"{artifact}/{name}", Body=b"x")
        with pytest.raises(ArtifactError):
            registry.download(version, cache / "v")
        s3.delete_object(Bucket="models", Key=f"{artifact}/{name}")
    assert not (tmp_path / "escaped.txt").exists() and not (cache / "v").exists()
    assert sorted(p.name for p in cache.iterdir()) == []  # no staging folder left behind
    # A registration whose artifact prefix climbs out of the registry is refused as well.
    record = orjson.loads(
        s3.get_object(Bucket="models", Key="registry/models/1/version.json")["Body"].read()
    )
    record["artifact_uri"] = "s3://models/registry/artifacts/../../elsewhere"
    s3.put_object(
        Bucket="models",
        Key="registry/models/2/version.json",
        Body=orjson.dumps(record | {"version": "2"}),
    )
    with pytest.raises(ArtifactError):
        registry.download("2", cache / "v2")
    # Clean keys still download.
    assert (registry.download(version, cache / "v") / "bundle.json").is_file()


def test_sagemaker_registry_downloads_refuse_dot_dot_keys_too(tmp_path: Path, s3: Any) -> None:
    registry = registry_from_uri(
        "sagemaker://recloop-models?artifacts=s3://models/sm",
        s3_client=s3,
        sagemaker_client=boto3.client("sagemaker", region_name="us-east-1"),
    )
    bundle = fit_bundle(tmp_path / "bundle", seed=1)
    version = registry.register(bundle, {"ndcg@10": 0.5}, "run-1").version
    artifact = registry.get(version).artifact_uri.removeprefix("s3://models/")
    s3.put_object(Bucket="models", Key=f"{artifact}/../../../escaped.txt", Body=b"x")
    with pytest.raises(ArtifactError):
        registry.download(version, tmp_path / "cache" / "v")
    assert not list(tmp_path.rglob("escaped.txt"))


def test_the_watcher_rejects_an_unsafe_artifact_for_good(tmp_path: Path, s3: Any) -> None:
    registry = registry_from_uri("s3://models/registry", s3_client=s3)
    version = publish(registry, fit_bundle(tmp_path / "bundle", seed=1))
    artifact = registry.get(version).artifact_uri.removeprefix("s3://models/")
    s3.put_object(Bucket="models", Key=f"{artifact}/../../escaped.txt", Body=b"x")
    loads: list[str] = []
    watcher = Watcher(
        registry,
        ModelHolder(),
        tmp_path / "cache",
        lambda folder, v: loads.append(v),  # type: ignore[arg-type,func-returns-value]
        backoff_s=0.01,
    )
    assert watcher.check_once() is None
    assert version in watcher.holder.rejected and "plain relative path" in watcher.last_error
    assert loads == []


@settings(max_examples=300, deadline=None)
@given(
    name=st.lists(
        st.sampled_from(["a", "b", ".", "/", "\\", "..", "~", "\0", "é", " ", "//"]), max_size=8
    ).map("".join)
)
def test_no_artifact_file_name_lands_outside_the_download_folder(name: str) -> None:
    root = Path(tempfile.gettempdir()) / "recloop-staging-property"
    version = ModelVersion("1", ModelStatus.APPROVED, "x", {}, None, "2026-01-01T00:00:00+00:00")
    try:
        target = _inside(root, name, version)
    except ArtifactError:
        return
    assert target.resolve().is_relative_to(root.resolve()) and target != root
