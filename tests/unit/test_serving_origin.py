"""Requests that bypass CloudFront (straight to API Gateway's execute-api URL) are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.config import Settings
from recloop.serving.app import create_app
from recloop.serving.origin import OriginCheckMiddleware

SECRET = "cloudfront-only-7f1c0d9e4b"


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        lake_uri=(tmp_path / "lake").as_uri(),
        registry_uri=(tmp_path / "registry").as_uri(),
        features_uri="sqlite:///" + str(tmp_path / "features.db"),
        model_cache_dir=tmp_path / "cache",
        monitor_service_metrics_uri=(tmp_path / "metrics.jsonl").as_uri(),
        **overrides,  # type: ignore[arg-type]
    )


def test_only_requests_carrying_cloudfronts_header_pass(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, origin_secret=SECRET))
    with TestClient(app) as client:
        direct = client.get("/version")
        assert direct.status_code == 403
        assert direct.json()["error"]["code"] == "forbidden"
        assert client.get("/version", headers={"X-Origin-Verify": "guess"}).status_code == 403
        assert client.get("/version", headers={"X-Origin-Verify": SECRET}).status_code == 200
        # The load balancer's health check comes from inside the VPC, without the header.
        assert client.get("/healthz").status_code == 200
        refused = client.post("/events", json={"events": []})
        assert refused.status_code == 403  # refused before the body is even parsed


def test_without_a_secret_configured_nothing_is_checked(tmp_path: Path) -> None:
    with TestClient(create_app(_settings(tmp_path))) as client:
        assert client.get("/version").status_code == 200


def test_an_empty_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="empty"):
        OriginCheckMiddleware(app=lambda *_: None, secret="")  # type: ignore[arg-type]
