"""Where `train()` writes its bundle when the caller gives no folder: never left in temp."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from recloop.registry import registry_from_uri
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import TrainOptions, train
from recloop.training.runs import RunTracker
from training_fixtures import write_synthetic_lake

# min_holdout_users=1: a small synthetic world; these tests are not about the gate's power.
BASE = TrainOptions(
    min_holdout_users=1,
    until="2026-01-15",
    holdout_days=4,
    validation_days=3,
    families=("popularity",),
)


@pytest.fixture()
def system_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private system temp folder (tempfile's), and a private working directory."""
    temp = tmp_path / "systmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return temp


def test_a_registered_bundle_leaves_nothing_in_the_system_temp_folder(
    tmp_path: Path, system_temp: Path
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    result = train(BASE, lake, registry, RunTracker.for_registry(registry))
    assert result.version is not None and result.bundle_dir is None
    assert list(system_temp.iterdir()) == []
    # The registry's copy is the artifact, and it is whole.
    copy = registry.download(result.version.version, tmp_path / "copy")
    assert ModelBundle.load(copy).meta.family == "popularity"


def test_an_unregistered_bundle_is_kept_under_the_local_root_not_in_temp(
    tmp_path: Path, system_temp: Path
) -> None:
    lake = write_synthetic_lake((tmp_path / "lake").as_uri(), seed=3)
    registry = registry_from_uri((tmp_path / "reg").as_uri())
    result = train(replace(BASE, register=False), lake, registry, RunTracker.for_registry(registry))
    assert result.bundle_dir is not None and result.version is None
    assert result.bundle_dir.is_relative_to(tmp_path / "work" / ".recloop" / "bundles")
    assert (result.bundle_dir / "bundle.json").is_file()
    assert list(system_temp.iterdir()) == []
