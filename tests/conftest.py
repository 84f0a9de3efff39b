"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout holds real data and AWS event shapes; CI lays a copy there.
SHARED = Path(os.environ.get("RECLOOP_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_dir() -> Path:
    """../shared, or a skip that says why when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(reason=f"shared data folder {SHARED} is absent (set RECLOOP_SHARED)")
    return SHARED


@pytest.fixture
def aws_event(shared_dir: Path):  # type: ignore[no-untyped-def]
    """Load a real AWS event shape from ../shared/aws-events by file name."""
    import json

    def load(name: str) -> dict:  # type: ignore[type-arg]
        path = shared_dir / "aws-events" / name
        if not path.is_file():
            pytest.skip(reason=f"{path} is absent")
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    return load


@pytest.fixture
def lake_uri(tmp_path: Path) -> str:
    """A fresh file:// lake."""
    return (tmp_path / "lake").as_uri()


@pytest.fixture
def s3_bucket() -> Iterator[tuple[object, str]]:
    """A moto S3 client and an empty bucket."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="recloop-test-lake")
        yield client, "recloop-test-lake"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's environment or writes to their working directory."""
    for name in list(os.environ):
        if name.startswith("RECLOOP_") and name != "RECLOOP_SHARED":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Every setting that defaults under ./.recloop points into the test's own folder instead.
    home = tmp_path / "recloop-home"
    monkeypatch.setenv("RECLOOP_LAKE_URI", (tmp_path / "default-lake").as_uri())
    monkeypatch.setenv("RECLOOP_FEATURES_URI", "sqlite:///" + str(home / "features.db"))
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", (home / "registry").as_uri())
    monkeypatch.setenv("RECLOOP_MODEL_CACHE_DIR", str(home / "serving-cache"))
    monkeypatch.setenv(
        "RECLOOP_MONITOR_SERVICE_METRICS_URI", (home / "metrics" / "service.jsonl").as_uri()
    )
    from recloop.config import get_settings

    get_settings.cache_clear()
