"""The registry on SageMaker Model Registry: a model package group, one package per version.

Mapping: a recloop version is a ModelPackageVersion; its status is ModelApprovalStatus; the
reason is ApprovalDescription; artifact URI, run id, family and metrics live in
CustomerMetadataProperties (strings), and the metrics also as a ModelQuality statistics JSON in
S3 so SageMaker Studio shows them. Bundles are uploaded as plain objects under an S3 prefix;
when a serving image is configured, the package's InferenceSpecification points at it with an
uncompressed S3Prefix model source, so the package is deployable as it stands.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from recloop.errors import NotFoundError
from recloop.lake.store import S3Store, store_from_uri
from recloop.registry.base import (
    ArtifactError,
    ModelStatus,
    ModelVersion,
    RegistryError,
    download_folder,
    upload_folder,
)
from recloop.registry.store import artifact_id

_METRIC_PREFIX = "metric:"
_MAX_METADATA = 50  # SageMaker's limit on CustomerMetadataProperties entries


class SageMakerRegistry:
    """ModelRegistry on a SageMaker model package group, with bundles in S3."""

    def __init__(
        self,
        group: str,
        artifacts_uri: str,
        sagemaker_client: Any = None,
        s3_client: Any = None,
        image_uri: str | None = None,
    ) -> None:
        import boto3

        if not artifacts_uri.startswith("s3://"):
            raise RegistryError(
                f"sagemaker registry needs an s3:// artifacts location, got {artifacts_uri!r}"
            )
        self.group = group
        self.uri = f"sagemaker://{group}"
        self.client = (
            sagemaker_client if sagemaker_client is not None else boto3.client("sagemaker")
        )
        store = store_from_uri(artifacts_uri, s3_client=s3_client)
        assert isinstance(store, S3Store)
        self.store = store
        self.image_uri = image_uri

    # ---- writing ----------------------------------------------------------------------------

    def register(
        self, bundle_dir: Path, metrics: dict[str, float], run_id: str | None
    ) -> ModelVersion:
        bundle_dir = Path(bundle_dir)
        try:
            meta = orjson.loads((bundle_dir / "bundle.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise RegistryError(f"{bundle_dir} is not a model bundle: {exc}") from exc
        self._ensure_group()
        art = artifact_id(bundle_dir, run_id)
        upload_folder(self.store, f"artifacts/{art}", bundle_dir)
        artifact_uri = f"{self.store.uri}/artifacts/{art}"
        metrics_key = f"metrics/{art}.json"
        self.store.put_if_absent(metrics_key, orjson.dumps(_statistics(metrics)))
        properties = {
            "artifact_uri": artifact_uri,
            "run_id": run_id or "",
            "family": str(meta.get("family", "")),
            **{f"{_METRIC_PREFIX}{k}": repr(float(v)) for k, v in sorted(metrics.items())},
        }
        if len(properties) > _MAX_METADATA:
            raise RegistryError(f"{len(metrics)} metrics exceed SageMaker's metadata limit")
        request: dict[str, Any] = {
            "ModelPackageGroupName": self.group,
            "ModelPackageDescription": f"{meta.get('family')} trained by run {run_id}",
            "ModelApprovalStatus": str(ModelStatus.PENDING),
            "CustomerMetadataProperties": properties,
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": f"{self.store.uri}/{metrics_key}",
                    }
                }
            },
        }
        if run_id:
            request["MetadataProperties"] = {"GeneratedBy": run_id}
        if self.image_uri:
            request["InferenceSpecification"] = {
                "Containers": [
                    {
                        "Image": self.image_uri,
                        "ModelDataSource": {
                            "S3DataSource": {
                                "S3Uri": artifact_uri + "/",
                                "S3DataType": "S3Prefix",
                                "CompressionType": "None",
                            }
                        },
                    }
                ],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            }
        arn = self._call("create_model_package", **request)["ModelPackageArn"]
        return self._describe(arn)

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
        arn = self._arn(version)
        current = self._call("describe_model_package", ModelPackageName=arn)
        decided_at = datetime.now(UTC).isoformat()
        key = f"decisions/{self.group}/{version}/{decided_at.replace(':', '')}-{status}.json"
        record = {
            "status": str(status),
            "reason": reason,
            "decided_at": decided_at,
            "evidence": evidence or {},
        }
        self.store.put_if_absent(key, orjson.dumps(record, default=str))
        # The full property map is sent again: UpdateModelPackage merges on AWS, and some
        # emulators replace, so sending everything gives the same result on both.
        properties = {
            **current.get("CustomerMetadataProperties", {}),
            "decided_at": decided_at,
            "decision_uri": f"{self.store.uri}/{key}",
        }
        self._call(
            "update_model_package",
            ModelPackageArn=arn,
            ModelApprovalStatus=str(status),
            ApprovalDescription=reason[:1024],
            CustomerMetadataProperties=properties,
        )
        return self._describe(arn, evidence=evidence or {})

    # ---- reading ----------------------------------------------------------------------------

    def list(self) -> list[ModelVersion]:
        return [self._describe(s["ModelPackageArn"]) for s in self._summaries()]

    def get(self, version: str) -> ModelVersion:
        return self._describe(self._arn(version))

    def champion(self) -> ModelVersion | None:
        approved = self._summaries(ModelApprovalStatus=str(ModelStatus.APPROVED))
        if not approved:
            return None
        newest = max(approved, key=lambda s: int(s.get("ModelPackageVersion", 0)))
        return self._describe(newest["ModelPackageArn"])

    def download(self, version: str, dest: Path) -> Path:
        record = self.get(version)
        prefix = record.artifact_uri.removeprefix(self.store.uri).strip("/")
        if prefix == record.artifact_uri.strip("/"):
            raise ArtifactError(
                f"version {version}'s artifact {record.artifact_uri} is outside {self.store.uri}"
            )
        return download_folder(self.store, prefix, Path(dest), record)

    # ---- helpers ----------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.describe_model_package_group(ModelPackageGroupName=self.group)
        except ClientError:
            self._call(
                "create_model_package_group",
                ModelPackageGroupName=self.group,
                ModelPackageGroupDescription="recloop models (created by the first register)",
            )

    def _summaries(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        from botocore.exceptions import ClientError

        paginator = self.client.get_paginator("list_model_packages")
        found: builtins.list[dict[str, Any]] = []
        try:
            for page in paginator.paginate(
                ModelPackageGroupName=self.group,
                SortBy="CreationTime",
                SortOrder="Ascending",
                **filters,
            ):
                found.extend(page.get("ModelPackageSummaryList", []))
        except ClientError as exc:
            raise RegistryError(f"list model packages in {self.group}: {exc}") from exc
        return sorted(found, key=lambda s: int(s.get("ModelPackageVersion", 0)))

    def _arn(self, version: str) -> str:
        wanted = str(version).removeprefix("v")
        for summary in self._summaries():
            if str(summary.get("ModelPackageVersion")) == wanted:
                return str(summary["ModelPackageArn"])
        raise NotFoundError(f"no model version {version!r} in {self.uri}")

    def _describe(self, arn: str, evidence: dict[str, Any] | None = None) -> ModelVersion:
        data = self._call("describe_model_package", ModelPackageName=arn)
        props: dict[str, str] = data.get("CustomerMetadataProperties") or {}
        metrics = {
            key.removeprefix(_METRIC_PREFIX): float(value)
            for key, value in props.items()
            if key.startswith(_METRIC_PREFIX)
        }
        created = data.get("CreationTime")
        return ModelVersion(
            version=str(data["ModelPackageVersion"]),
            status=ModelStatus(data.get("ModelApprovalStatus", ModelStatus.PENDING)),
            artifact_uri=props.get("artifact_uri", ""),
            metrics=metrics,
            run_id=props.get("run_id") or None,
            created_at=created.isoformat() if isinstance(created, datetime) else str(created),
            reason=data.get("ApprovalDescription"),
            family=props.get("family") or None,
            decided_at=props.get("decided_at"),
            evidence=evidence or {},
        )

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"sagemaker {operation}: {exc}") from exc
        return result


def _statistics(metrics: dict[str, float]) -> dict[str, Any]:
    # The shape SageMaker Model Monitor writes for model quality: metric name -> value.
    return {"recloop_metrics": {k: {"value": float(v)} for k, v in sorted(metrics.items())}}
