"""The model registry contract: versions of trained bundles with an approval status.

A version is registered as PendingManualApproval; only `approve` (a person, or the gate with its
evidence) makes it Approved, and the champion is the newest Approved version. Nothing is approved
by default. Rejecting the champion makes the previous Approved version champion again: that is
how a rollback is expressed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

import orjson

from recloop.errors import RecloopError
from recloop.lake.store import ObjectStore

REGISTRY_FILE = "model_version.json"  # same name as recloop.training.bundle.REGISTRY_FILE


class RegistryError(RecloopError):
    """The registry could not be read or written, or a request makes no sense for it."""


class ArtifactError(RegistryError):
    """A version's artifact is unusable as stored (unsafe or no files): retrying cannot help."""


class ModelStatus(StrEnum):
    """SageMaker Model Registry's approval states, used by every backend."""

    PENDING = "PendingManualApproval"
    APPROVED = "Approved"
    REJECTED = "Rejected"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: where its bundle is, how it scored, and what was decided."""

    version: str
    status: ModelStatus
    artifact_uri: str
    metrics: dict[str, float]
    run_id: str | None
    created_at: str
    reason: str | None = None
    family: str | None = None
    decided_at: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        values["status"] = ModelStatus(values["status"])
        values["metrics"] = {k: float(v) for k, v in (values.get("metrics") or {}).items()}
        return cls(**values)


@runtime_checkable
class ModelRegistry(Protocol):
    """Register, list, approve and reject model versions; find the champion."""

    uri: str

    def register(
        self, bundle_dir: Path, metrics: dict[str, float], run_id: str | None
    ) -> ModelVersion:
        """Upload a bundle folder and record it as a new PendingManualApproval version."""
        ...

    def list(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        ...

    def get(self, version: str) -> ModelVersion:
        """One version; NotFoundError when it does not exist."""
        ...

    def champion(self) -> ModelVersion | None:
        """The newest Approved version, or None when nothing is approved."""
        ...

    def approve(
        self, version: str, reason: str, evidence: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Mark a version Approved, with the reason (and the gate's evidence)."""
        ...

    def reject(
        self, version: str, reason: str, evidence: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Mark a version Rejected, with the reason (and the gate's evidence)."""
        ...

    def download(self, version: str, dest: Path) -> Path:
        """Copy the version's bundle into `dest` (atomically) and return it."""
        ...


def latest_approved(versions: list[ModelVersion]) -> ModelVersion | None:
    """The newest Approved version of a list ordered oldest first."""
    approved = [v for v in versions if v.status is ModelStatus.APPROVED]
    return approved[-1] if approved else None


def upload_folder(store: ObjectStore, prefix: str, folder: Path) -> int:
    """Copy every file under `folder` to `prefix/<relative path>`; returns the bytes sent.

    Keys are written only when absent: an artifact id is content-derived, so a retry after a
    partial upload fills in what is missing and never replaces what is there.
    """
    sent = 0
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.name != REGISTRY_FILE:
            data = path.read_bytes()
            store.put_if_absent(f"{prefix}/{path.relative_to(folder).as_posix()}", data)
            sent += len(data)
    return sent


def download_folder(store: ObjectStore, prefix: str, dest: Path, version: ModelVersion) -> Path:
    """Copy `prefix/*` into `dest` through a temporary sibling, so readers never see half.

    Safe when several processes (serving workers sharing a cache) download the same version to
    the same place at once: one rename wins and the others find its complete copy. Keys are
    names, not paths: a `..` or absolute part in the prefix or a key is refused (ArtifactError)
    before anything is written, so nothing lands outside `dest`.
    """
    dest = Path(dest)
    _check_relative(prefix, f"version {version.version}'s artifact prefix")
    if dest.exists() and any(dest.iterdir()):
        # A complete copy appears in one rename, so a non-empty folder is either this version,
        # already downloaded (bundles are immutable), or something else.
        if _holds(dest, version):
            return dest
        raise RegistryError(f"{dest} exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        found = 0
        for info in store.list(prefix + "/"):
            target = _inside(staging, info.key[len(prefix) + 1 :], version)
            target.parent.mkdir(parents=True, exist_ok=True)
            store.copy_to(info.key, target)  # streamed: arrays can be hundreds of MB
            found += 1
        if not found:
            raise ArtifactError(f"version {version.version}: no artifact under {prefix!r}")
        (staging / REGISTRY_FILE).write_bytes(orjson.dumps(version.to_dict()))
        try:
            if dest.exists():
                dest.rmdir()  # an empty placeholder only; rmdir refuses anything else
            staging.replace(dest)
        except OSError as exc:
            if _holds(dest, version):
                return dest  # another process finished the same download first
            message = f"cannot move version {version.version} into {dest}: {exc}"
            raise RegistryError(message) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return dest


def _check_relative(name: str, what: str) -> None:
    """Refuse a key (or key part) that is not a plain relative path to a file below: absolute,
    `..`, `\\`, NUL, or nothing but dots and slashes (the folder itself)."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or "\\" in name or "\0" in name or ".." in parts:
        raise ArtifactError(f"{what} {name!r} is not a plain relative path")


def _inside(root: Path, name: str, version: ModelVersion) -> Path:
    """`root / name`, refused when `name` would put the file anywhere but under `root`."""
    _check_relative(name, f"version {version.version}: artifact file")
    target = root / name
    if not target.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"version {version.version}: artifact file {name!r} leaves {root}")
    return target


def _holds(folder: Path, version: ModelVersion) -> bool:
    marker = folder / REGISTRY_FILE
    try:
        return bool(orjson.loads(marker.read_bytes()).get("version") == version.version)
    except (OSError, orjson.JSONDecodeError):
        return False
