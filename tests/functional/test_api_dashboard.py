"""The API records service-metric snapshots and serves the monitoring dashboard at /dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.monitoring.service_metrics import ServiceMetricsLog
from recloop.serving.app import create_app
from recloop.serving.testing import TinyWorld, tiny_world, world_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return tiny_world(tmp_path_factory.mktemp("world"))


def test_requests_become_snapshots_and_the_dashboard_shows_them(
    world: TinyWorld, tmp_path: Path
) -> None:
    metrics_uri = (tmp_path / "service.jsonl").as_uri()
    settings = world_settings(
        world, lake_uri=(tmp_path / "lake").as_uri(), monitor_service_metrics_uri=metrics_uri
    )
    with TestClient(create_app(settings)) as client:
        for user in ("u0", "u1", "nobody"):
            assert client.get("/recommendations", params={"user_id": user}).status_code == 200
        assert client.get("/recommendations", params={"k": 0}).status_code == 422
        client.app.state.runtime.append_snapshot()  # type: ignore[attr-defined]
        [snapshot] = ServiceMetricsLog(metrics_uri).read()
        assert snapshot.requests == 4
        assert snapshot.status == {"200": 3, "422": 1}
        assert snapshot.model_version == world.version
        page = client.get("/dashboard", params={"hours": 1})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '"requests": 4' in page.text or '"requests":4' in page.text
        assert client.get("/dashboard", params={"hours": 0}).status_code == 422


def test_stopping_the_app_flushes_the_last_snapshot(world: TinyWorld, tmp_path: Path) -> None:
    metrics_uri = (tmp_path / "service.jsonl").as_uri()
    settings = world_settings(world, monitor_service_metrics_uri=metrics_uri)
    with TestClient(create_app(settings)) as client:
        client.get("/healthz")
    assert sum(s.requests for s in ServiceMetricsLog(metrics_uri).read()) == 1
