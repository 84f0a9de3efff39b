"""A registry on an object store (file:// folder or s3:// prefix), the embedded default.

Layout under the registry root:
    artifacts/<artifact_id>/...            bundle files (content-derived id, written once)
    models/<n>/version.json                the registration: artifact URI, metrics, run id
    models/<n>/status/<seq>.json           each decision, append-only; the newest one counts
    runs/<run_id>/...                      run records (recloop.training.runs)

Every object is written only if absent, so two trainers registering at once each get their own
version number and no decision is ever overwritten: the status history is an audit log.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from recloop.errors import LakeError, NotFoundError
from recloop.lake.store import ObjectStore, store_from_uri
from recloop.registry.base import (
    ModelStatus,
    ModelVersion,
    RegistryError,
    download_folder,
    latest_approved,
    upload_folder,
)

_VERSION_KEY = re.compile(r"^models/(\d+)/version\.json$")
_STATUS_KEY = re.compile(r"^models/(\d+)/status/(\d+)\.json$")
_MAX_CLAIM_ATTEMPTS = 100


def artifact_id(bundle_dir: Path, run_id: str | None) -> str:
    """A content-derived name for a bundle: the run id and a digest of bundle.json."""
    digest = hashlib.sha256((Path(bundle_dir) / "bundle.json").read_bytes()).hexdigest()[:16]
    return f"{run_id or 'manual'}-{digest}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


class StoreRegistry:
    """ModelRegistry on an ObjectStore (LocalStore or S3Store)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.uri = store.uri

    @classmethod
    def from_uri(cls, uri: str, s3_client: Any = None) -> StoreRegistry:
        return cls(store_from_uri(uri, s3_client=s3_client))

    # ---- writing ----------------------------------------------------------------------------

    def register(
        self, bundle_dir: Path, metrics: dict[str, float], run_id: str | None
    ) -> ModelVersion:
        bundle_dir = Path(bundle_dir)
        meta = _bundle_meta(bundle_dir)
        art = artifact_id(bundle_dir, run_id)
        upload_folder(self.store, f"artifacts/{art}", bundle_dir)
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            number = self._next_number()
            record = ModelVersion(
                version=str(number),
                status=ModelStatus.PENDING,
                artifact_uri=f"{self.uri}/artifacts/{art}",
                metrics={k: float(v) for k, v in metrics.items()},
                run_id=run_id,
                created_at=_now(),
                family=meta.get("family"),
            )
            payload = orjson.dumps(record.to_dict())
            if self.store.put_if_absent(f"models/{number}/version.json", payload):
                return record
        raise RegistryError(f"could not claim a version number in {self.uri}")

    def approve(
        self, version: str, reason: str, evidence: dict[str, Any] | None = None
    ) -> ModelVersion:
        return self._decide(version, ModelStatus.APPROVED, reason, evidence)

    def reject(
        self, version: str, reason: str, evidence: dict[str, Any] | None = None
    ) -> ModelVersion:
        return self._decide(version, ModelStatus.REJECTED, reason, evidence)

    def _decide(
        self, version: str, status: ModelStatus, reason: str, evidence: dict[str, Any] | None
    ) -> ModelVersion:
        if not reason.strip():
            raise RegistryError("a decision needs a reason")
        number = _number(version)
        self.get(version)  # NotFoundError first
        decision = {
            "status": str(status),
            "reason": reason,
            "decided_at": _now(),
            "evidence": evidence or {},
        }
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            seq = len(list(self.store.list(f"models/{number}/status/"))) + 1
            key = f"models/{number}/status/{seq:06d}.json"
            if self.store.put_if_absent(key, orjson.dumps(decision, default=str)):
                return self.get(version)
        raise RegistryError(f"could not record a decision for version {version}")

    # ---- reading ----------------------------------------------------------------------------

    def list(self) -> list[ModelVersion]:
        numbers: set[int] = set()
        decisions: dict[int, str] = {}  # version -> key of its newest decision
        for info in self.store.list("models/"):
            if match := _VERSION_KEY.match(info.key):
                numbers.add(int(match[1]))
            elif match := _STATUS_KEY.match(info.key):
                number = int(match[1])
                decisions[number] = max(decisions.get(number, ""), info.key)
        return [self._read(number, decisions.get(number)) for number in sorted(numbers)]

    def get(self, version: str) -> ModelVersion:
        number = _number(version)
        keys = [info.key for info in self.store.list(f"models/{number}/status/")]
        return self._read(number, max(keys) if keys else None)

    def champion(self) -> ModelVersion | None:
        return latest_approved(self.list())

    def download(self, version: str, dest: Path) -> Path:
        record = self.get(version)
        prefix = record.artifact_uri.removeprefix(self.uri).strip("/")
        return download_folder(self.store, prefix, Path(dest), record)

    def _read(self, number: int, decision_key: str | None) -> ModelVersion:
        try:
            data = orjson.loads(self.store.get(f"models/{number}/version.json"))
            if decision_key is not None:
                data.update(orjson.loads(self.store.get(decision_key)))
        except LakeError as exc:
            raise NotFoundError(f"no model version {number} in {self.uri}") from exc
        return ModelVersion.from_dict(data)

    def _next_number(self) -> int:
        numbers = [
            int(match[1])
            for info in self.store.list("models/")
            if (match := _VERSION_KEY.match(info.key))
        ]
        return max(numbers, default=0) + 1


def _number(version: str) -> int:
    try:
        number = int(str(version).removeprefix("v"))
    except ValueError as exc:
        raise NotFoundError(f"{version!r} is not a model version (a number)") from exc
    if number < 1:
        raise NotFoundError(f"{version!r} is not a model version (a number from 1)")
    return number


def _bundle_meta(bundle_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = orjson.loads((bundle_dir / "bundle.json").read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RegistryError(f"{bundle_dir} is not a model bundle: {exc}") from exc
    return data
