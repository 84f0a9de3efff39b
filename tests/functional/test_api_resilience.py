"""Degraded answers, the event queue, the hot-swap watcher, auth, CORS and the Lambda handler."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recloop.lake import Lake
from recloop.serving.app import create_app
from recloop.serving.candidates.base import Placement
from recloop.serving.errors import BackendError
from recloop.serving.features.sqlite import SQLiteFeatureStore
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import TinyWorld, fit_bundle, publish, tiny_world, world_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return tiny_world(tmp_path_factory.mktemp("world"))


class FailingStore(SQLiteFeatureStore):
    """A real SQLite store whose reads fail, as a broken DocumentDB connection would."""

    def recent_history(self, actor_id: str, limit: int = 50) -> Any:
        raise BackendError("features", "connection refused")


class SlowStore(SQLiteFeatureStore):
    """A real SQLite store that answers history reads after 2 s, over a network-like call."""

    blocking_io = True

    def recent_history(self, actor_id: str, limit: int = 50) -> Any:
        time.sleep(2.0)
        return super().recent_history(actor_id, limit)


class DeadCandidates:
    name = "dead"
    blocking_io = False

    def publish(self, model: Any) -> None:
        return None

    def placement(self, model: Any) -> Placement:
        return Placement.SERVED

    def candidates(self, model: Any, query: Any) -> Any:
        raise ConnectionError("no route to host")

    def similar(self, model: Any, item: int, n: int) -> Any:
        raise ConnectionError("no route to host")

    def ping(self) -> None:
        raise ConnectionError("no route to host")


def world_items_of(client: TestClient, user_id: str) -> list[str]:
    """The items the served model was trained on for `user_id`."""
    model = client.app.state.runtime.holder.current  # type: ignore[attr-defined]
    row = model.history_parts([], user_id)
    return model.item_ids_of(np.asarray(row.indices, dtype=np.int64))


def make_client(world: TinyWorld, tmp_path: Path, **overrides: Any) -> TestClient:
    settings = world_settings(
        world,
        lake_uri=(tmp_path / "lake").as_uri(),
        **overrides.pop("settings", {}),
    )
    return TestClient(create_app(settings, build_runtime(settings, **overrides)))


@pytest.mark.parametrize("store_cls", [FailingStore, SlowStore])
def test_failing_or_slow_feature_store_degrades_to_own_history_or_popularity(
    world: TinyWorld, tmp_path: Path, store_cls: type[SQLiteFeatureStore]
) -> None:
    store = store_cls(world.root / "features.db", timeout_ms=100)
    with make_client(world, tmp_path, features=store) as client:
        start = time.perf_counter()
        response = client.get("/recommendations", params={"user_id": "u0"})
        elapsed = time.perf_counter() - start
        body = response.json()
        assert response.status_code == 200
        # A user the model was trained on: answered from the model's copy of their history.
        assert body["degraded"] is True and body["degraded_reasons"] == ["features"]
        assert body["source"] == "personalised" and len(body["items"]) == 10
        assert elapsed < 1.5  # the deadline answered, not the 2 s backend
        trained = set(world_items_of(client, "u0"))
        assert not trained & {i["item_id"] for i in body["items"]}  # seen items stay excluded
        # Someone the model does not know: its popularity.
        body = client.get("/recommendations", params={"visitor_id": "v-new"}).json()
        assert body["degraded"] is True and body["source"] == "popularity_fallback"
        assert len(body["items"]) == 10
        metrics = client.get("/metrics").text
        assert 'recloop_degraded_responses_total{reason="features"}' in metrics


def test_dead_candidate_source_degrades_to_the_models_own_lists_and_the_breaker_opens(
    world: TinyWorld, tmp_path: Path
) -> None:
    dead = DeadCandidates()
    with make_client(world, tmp_path, candidates=dead) as client:
        for _ in range(7):
            body = client.get("/recommendations", params={"user_id": "u1"}).json()
            # Still personal: the model's own neighbour lists answer instead of the index.
            assert body["degraded"] is True and body["source"] == "personalised"
            assert body["degraded_reasons"] == ["candidates"]
            assert len(body["items"]) == 10
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.service.candidates_guard.breaker.state == "open"
        similar = client.get("/items/i0/similar").json()
        assert similar["degraded"] is True and len(similar["items"]) > 0
        # Readiness is the model; the dead backend is reported, never a 503 for the fleet.
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["backends"]["candidates"].startswith("ConnectionError")
        assert 'recloop_backend_up{backend="candidates"} 0.0' in client.get("/metrics").text


def test_full_event_queue_is_503_with_retry_after(world: TinyWorld, tmp_path: Path) -> None:
    with make_client(world, tmp_path, settings={"event_queue_size": 2}) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        runtime.sink.close()  # stop delivery so the queue fills up
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "event_type": "view",
                "timestamp": datetime.now(UTC).isoformat(),
                "visitor_id": "v1",
                "item_id": "i1",
            }
            for _ in range(3)
        ]
        response = client.post("/events", json={"events": events})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "queue_full"


def test_events_and_impressions_reach_the_lake(world: TinyWorld, tmp_path: Path) -> None:
    with make_client(world, tmp_path) as client:
        rec = client.get("/recommendations", params={"user_id": "u2"}).json()
        event = {
            "event_id": "click-1",
            "event_type": "click",
            "timestamp": datetime.now(UTC).isoformat(),
            "user_id": "u2",
            "item_id": rec["items"][0]["item_id"],
            "rec_id": rec["rec_id"],
        }
        assert client.post("/events", json={"events": [event]}).status_code == 202
        assert client.app.state.runtime.sink.flush(30.0)  # type: ignore[attr-defined]
    table, _ = Lake.from_uri((tmp_path / "lake").as_uri()).read_events()
    rows = table.to_pylist()
    kinds = {r["event_type"]: r for r in rows}
    assert kinds["click"]["rec_id"] == rec["rec_id"]
    assert kinds["impression"]["rec_id"] == rec["rec_id"]
    assert kinds["impression"]["item_ids"] == [i["item_id"] for i in rec["items"]]
    assert kinds["impression"]["model_version"] == rec["model_version"]


def test_watcher_swaps_to_a_new_champion_and_never_serves_a_corrupt_one(
    tmp_path: Path,
) -> None:
    world = tiny_world(tmp_path / "w")
    with make_client(world, tmp_path, settings={"watch_interval_seconds": 3600}) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert client.get("/version").json()["model_version"] == world.version
        # A corrupted artifact: approved, but one array no longer matches its checksum.
        bad_dir = fit_bundle(tmp_path / "bad", seed=1)
        with (bad_dir / "item_popularity.npy").open("r+b") as handle:
            handle.seek(-4, 2)
            handle.write(b"\xff\xff\xff\xff")
        bad = publish(world.registry, bad_dir)
        assert runtime.watcher.check_once() is None
        assert client.get("/version").json()["model_version"] == world.version
        assert bad in client.get("/version").json()["rejected_versions"]
        assert "recloop_model_rejected_total" in client.get("/metrics").text
        good = publish(world.registry, fit_bundle(tmp_path / "good", seed=2))
        in_flight = runtime.holder.current
        assert runtime.watcher.check_once() is not None
        assert client.get("/version").json()["model_version"] == good
        assert in_flight.version == world.version  # a request holding the old model keeps it
        # Rolling back: rejecting the champion makes the previous approved one champion again.
        world.registry.reject(bad, "corrupt artifact")
        world.registry.reject(good, "rollback")
        runtime.watcher.check_once()
        assert client.get("/recommendations?user_id=u0").json()["model_version"] == world.version


def test_bearer_token_and_cors(world: TinyWorld, tmp_path: Path) -> None:
    settings = {"api_token": SecretStr("s3cret"), "cors_origins": ("https://shop.example",)}
    with make_client(world, tmp_path, settings=settings) as client:
        denied = client.get("/recommendations", params={"user_id": "u0"})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        ok = client.get(
            "/recommendations",
            params={"user_id": "u0"},
            headers={"Authorization": "Bearer s3cret", "Origin": "https://shop.example"},
        )
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        assert client.get("/healthz").status_code == 200  # probes need no token


def _load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("api_handler", REPO / "lambdas/api/handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lambda_api(world: TinyWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    settings = world_settings(world, lake_uri=(tmp_path / "lake").as_uri())
    for name, value in settings.model_dump(
        include={"lake_uri", "registry_uri", "features_uri"}
    ).items():
        monkeypatch.setenv(f"RECLOOP_{name.upper()}", str(value))
    monkeypatch.setenv("RECLOOP_MODEL_CACHE_DIR", str(settings.model_cache_dir))
    from recloop.config import get_settings

    get_settings.cache_clear()
    # The test owns the event loop Mangum runs on (as the Lambda runtime's process would), so
    # it is closed here rather than left to the garbage collector with its sockets open.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = _load_handler()
    try:
        yield handler
        handler._adapter().app.state.runtime.sink.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_lambda_handler_with_api_gateway_v1_event(lambda_api: Any, aws_event: Any) -> None:
    event = aws_event("apiGatewayProxyEvent.json")
    event.update(
        path="/recommendations",
        httpMethod="GET",
        queryStringParameters={"user_id": "u0", "k": "3"},
        multiValueQueryStringParameters={"user_id": ["u0"], "k": ["3"]},
        body=None,
    )
    response = lambda_api.lambda_handler(event, None)
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert len(body["items"]) == 3 and body["source"] == "personalised"


def test_lambda_handler_with_api_gateway_v2_event(lambda_api: Any, aws_event: Any) -> None:
    event = aws_event("apiGatewayProxyV2Event_GET.json")
    event.update(rawPath="/items/i0/similar", rawQueryString="k=4")
    event["requestContext"]["http"]["path"] = "/items/i0/similar"
    response = lambda_api.lambda_handler(event, None)
    assert response["statusCode"] == 200
    assert len(json.loads(response["body"])["items"]) == 4
    event.update(rawPath="/recommendations", rawQueryString="k=0&user_id=u0")
    bad = lambda_api.lambda_handler(event, None)
    assert bad["statusCode"] == 422


class FlakyRegistry:
    """The world's real registry, whose champion() fails after the first call (an outage)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.calls = 0

    def champion(self) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("registry endpoint unreachable")
        return self.inner.champion()

    def download(self, version: str, dest: Path) -> Path:
        return self.inner.download(version, dest)  # type: ignore[no-any-return]


def test_a_registry_outage_keeps_the_served_model(world: TinyWorld, tmp_path: Path) -> None:
    registry = FlakyRegistry(world.registry)
    with make_client(world, tmp_path, registry=registry) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.watcher.check_once() is None  # the outage: no exception, no swap
        assert "unreachable" in runtime.watcher.last_error
        body = client.get("/recommendations", params={"user_id": "u3"}).json()
        assert body["model_version"] == world.version and body["degraded"] is False


def test_a_swapped_out_model_is_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    # The runtime freezes the collector's generations after loading a model (long-lived
    # objects stop costing full collections), so the old model must be freed by reference
    # counting alone: a reference cycle through it would keep every swapped-out model alive.
    import gc
    import time
    import weakref

    world = tiny_world(tmp_path / "w")
    # The guard window holds the swapped-out model back for a share of users: 0.3 s here, so
    # the test sees it held, then freed at the first poll after the window.
    settings = {"watch_interval_seconds": 3600, "guard_window_minutes": 0.005}
    with make_client(world, tmp_path, settings=settings) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert client.get("/recommendations?user_id=u0").status_code == 200
        old = weakref.ref(runtime.holder.current)
        assert gc.get_freeze_count() > 0  # the model loaded at start-up is frozen
        publish(world.registry, fit_bundle(tmp_path / "next", seed=3))
        gc.disable()
        try:
            assert runtime.watcher.check_once() is not None
            assert client.get("/recommendations?user_id=u0").status_code == 200
            assert old() is not None and runtime.holder.holdback is not None
            time.sleep(0.4)
            assert runtime.watcher.check_once() is None  # nothing new: releases the old model
            assert runtime.holder.holdback is None
            assert client.get("/recommendations?user_id=u0").status_code == 200
            assert old() is None, "the swapped-out model is still referenced"
        finally:
            gc.enable()
    assert gc.get_freeze_count() == 0  # stopping the app unfreezes (tests run many apps)


def test_a_catalogue_outage_part_way_through_a_load_still_serves_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recloop.serving.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_CATALOGUE_CHUNK", 10)  # 45 items: five chunks

    class ItemsFailAfterOneRead(SQLiteFeatureStore):
        reads = 0

        def get_items(self, item_ids: Any) -> Any:
            type(self).reads += 1
            if type(self).reads > 1:
                raise BackendError("features", "connection reset")
            return super().get_items(item_ids)

    world = tiny_world(tmp_path / "w")
    store = ItemsFailAfterOneRead(world.features_uri.removeprefix("sqlite:///"))
    with make_client(world, tmp_path, features=store) as client:
        model = client.app.state.runtime.holder.current  # type: ignore[attr-defined]
        assert model.version == world.version
        # The first chunk arrived before the outage and stays; the rest is read on request.
        assert model.items.known[:10].all() and not model.items.known[10:].any()
        indexed = np.concatenate(list(model.category_items.values()))
        assert set(indexed.tolist()) <= set(range(10)) and len(indexed)
        answer = client.get("/recommendations?user_id=u0")
        assert answer.status_code == 200 and answer.json()["items"]
        # The store answers again: the backend monitor's repair reads the whole catalogue.
        type(store).reads = -100
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        client.portal.call(runtime.backends.check)  # type: ignore[union-attr]
        assert runtime.backends.up("features")
        runtime.repair()
        assert model.items.known.all()
        indexed = np.concatenate(list(model.category_items.values()))
        assert sorted(indexed.tolist()) == list(range(model.n_items))


def test_an_outage_logs_one_warning_per_backend_not_one_per_request(
    world: TinyWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # At production traffic a per-request line is thousands of log lines a second per task;
    # the degraded-answer counter keeps the count.
    store = FailingStore(world.root / "features.db", timeout_ms=100)
    with make_client(world, tmp_path, features=store) as client:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recloop.serving.service"):
            for _ in range(20):
                body = client.get("/recommendations", params={"user_id": "u0"}).json()
                assert body["degraded_reasons"] == ["features"]
        lines = [r for r in caplog.records if r.getMessage().startswith("degraded answer")]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert (
            'recloop_degraded_responses_total{reason="features"} 20.0'
            in client.get("/metrics").text
        )
