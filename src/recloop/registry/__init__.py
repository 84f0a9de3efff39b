"""The model registry: versions of trained bundles, their approval status and the champion.

`registry_from_uri` picks the backend from a URI:
    file:///path or a plain path      StoreRegistry on a local folder (the default)
    s3://bucket/prefix                StoreRegistry on S3 (same layout, through boto3)
    sagemaker://<group>[?artifacts=s3://bucket/prefix]
                                      SageMaker Model Registry; bundles under the artifacts URI
                                      (or RECLOOP_REGISTRY_ARTIFACTS_URI)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from recloop.errors import ConfigError
from recloop.registry.base import (
    ArtifactError,
    ModelRegistry,
    ModelStatus,
    ModelVersion,
    RegistryError,
    latest_approved,
)
from recloop.registry.sagemaker import SageMakerRegistry
from recloop.registry.store import StoreRegistry


def registry_from_uri(
    uri: str,
    s3_client: Any = None,
    sagemaker_client: Any = None,
    artifacts_uri: str | None = None,
    image_uri: str | None = None,
) -> ModelRegistry:
    """The registry a URI names (see the module docstring)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("file", "s3", ""):
        if not uri:
            raise ConfigError("empty registry URI")
        return StoreRegistry.from_uri(uri, s3_client=s3_client)
    if parsed.scheme == "sagemaker":
        if not parsed.netloc:
            raise ConfigError(f"{uri!r} names no model package group")
        query = parse_qs(parsed.query)
        artifacts = query["artifacts"][0] if query.get("artifacts") else artifacts_uri
        if not artifacts:
            raise ConfigError(
                f"{uri!r}: set ?artifacts=s3://bucket/prefix or RECLOOP_REGISTRY_ARTIFACTS_URI"
            )
        return SageMakerRegistry(
            parsed.netloc,
            artifacts,
            sagemaker_client=sagemaker_client,
            s3_client=s3_client,
            image_uri=image_uri,
        )
    raise ConfigError(
        f"unsupported registry URI {uri!r}: use file:///path, s3://bucket/prefix "
        "or sagemaker://group"
    )


def open_registry(uri: str | None = None, **clients: Any) -> ModelRegistry:
    """The registry named by `uri`, or by RECLOOP_REGISTRY_URI when it is None."""
    from recloop.config import get_settings

    settings = get_settings()
    return registry_from_uri(
        uri or settings.registry_uri,
        artifacts_uri=settings.registry_artifacts_uri or None,
        image_uri=settings.model_image_uri or None,
        **clients,
    )


__all__ = [
    "ArtifactError",
    "ModelRegistry",
    "ModelStatus",
    "ModelVersion",
    "RegistryError",
    "SageMakerRegistry",
    "StoreRegistry",
    "latest_approved",
    "open_registry",
    "registry_from_uri",
]
