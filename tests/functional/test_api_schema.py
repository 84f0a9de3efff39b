"""Schemathesis against the app's own OpenAPI schema: no generated input gets a 5xx.

The app runs in-process with real backends (SQLite, a fitted model, the lake); inputs that break
the schema must be 4xx with the one error body, valid ones 2xx.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from recloop.serving.app import create_app
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import tiny_world, world_settings


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root: Path = tmp_path_factory.mktemp("schema-world")
    world = tiny_world(root / "world")
    app_settings = world_settings(world, lake_uri=(root / "lake").as_uri())
    runtime = build_runtime(app_settings)
    assert runtime.watcher is not None
    runtime.watcher.check_once()  # what the lifespan does; the schema's client skips lifespan
    runtime.sink.start()
    app = create_app(app_settings, runtime)
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    runtime.sink.close()


@pytest.mark.slow
def test_no_generated_input_gets_a_5xx(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/recommendations",
        "/events",
        "/items/{item_id}/similar",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (case.path, case.query, case.body, response.text)
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["code"] and error["message"]

        check()
