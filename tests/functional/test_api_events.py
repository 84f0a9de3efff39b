"""POST /events: bad events are 422 (never 500), clients cannot post impressions or claim a
server's event id, oversized bodies are 413 unread, history writes have their own breaker."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from recloop.lake import Lake
from recloop.serving.app import create_app
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import TinyWorld, running_server, tiny_world, world_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return tiny_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def client(world: TinyWorld, lake_path: Path) -> Iterator[TestClient]:
    settings = world_settings(world, lake_uri=lake_path.as_uri())
    with TestClient(create_app(settings)) as client:
        yield client


def click(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": "click",
        "timestamp": datetime.now(UTC).isoformat(),
        "user_id": "u0",
        "item_id": "i1",
        **fields,
    }


def lake_ids(client: TestClient, lake_path: Path) -> list[str]:
    assert client.app.state.runtime.sink.flush(30.0)  # type: ignore[attr-defined]
    table, _ = Lake.from_uri(lake_path.as_uri()).read_events(dedupe=False)
    return sorted(table.column("event_id").to_pylist())


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp": "9999-12-31T23:59:59-01:00"},  # overflows once converted to UTC
        {"timestamp": "0001-01-01T00:00:00+01:00"},
        {"event_type": "view", "positions": [2**31]},  # beyond the lake's int32 column
        {"event_type": "impression", "item_ids": ["i1"], "item_id": None},
    ],
)
def test_a_bad_event_is_422_with_its_field_never_500(
    client: TestClient, lake_path: Path, fields: dict[str, Any]
) -> None:
    response = client.post("/events", json={"events": [click(event_id="ok"), click(**fields)]})
    assert response.status_code == 422, response.text
    body = response.json()["error"]
    assert body["code"] == "invalid_request"
    assert body["fields"] and all(f["field"].startswith("body.events.1") for f in body["fields"])
    assert lake_ids(client, lake_path) == []  # the request is refused whole, nothing queued


def test_clients_cannot_post_impressions(client: TestClient) -> None:
    rec = client.get("/recommendations", params={"user_id": "u0", "k": 3}).json()
    fake = click(event_type="impression", item_ids=["i1"], item_id=None, rec_id=rec["rec_id"])
    response = client.post("/events", json={"events": [fake]})
    assert response.status_code == 422
    assert "impressions are recorded by the API" in response.text


def test_client_event_ids_cannot_collide_with_the_servers(
    client: TestClient, lake_path: Path
) -> None:
    rec = client.get("/recommendations", params={"user_id": "u0", "k": 3}).json()
    server_id = f"imp-{rec['rec_id']}"
    # a click that claims the impression's id, sent before the impression is written
    forged = click(event_id=server_id, rec_id=rec["rec_id"], item_id=rec["items"][0]["item_id"])
    assert client.post("/events", json={"events": [forged]}).status_code == 202
    ids = lake_ids(client, lake_path)
    assert server_id in ids  # the impression is written: not taken for a duplicate
    assert f"c-{server_id}" in ids  # the click is kept, in the clients' namespace
    table, _ = Lake.from_uri(lake_path.as_uri()).read_events(dedupe=False)
    ids_and_sources = zip(
        table.column("event_id").to_pylist(), table.column("source").to_pylist(), strict=True
    )
    sources = dict(ids_and_sources)
    assert sources[f"c-{server_id}"] == "tracker" and sources[server_id] == "api"


def test_a_client_cannot_claim_a_server_source(client: TestClient, lake_path: Path) -> None:
    assert (
        client.post("/events", json={"events": [click(event_id="s", source="api")]}).status_code
        == 202
    )
    assert lake_ids(client, lake_path) == ["c-s"]
    table, _ = Lake.from_uri(lake_path.as_uri()).read_events(dedupe=False)
    assert table.column("source").to_pylist() == ["tracker"]


def test_an_oversized_body_is_413_without_being_read_whole(world: TinyWorld) -> None:
    settings = world_settings(world, events_max_body_bytes=64 * 1024)
    with running_server(settings) as base:
        declared = httpx.post(
            f"{base}/events",
            content=b"{" + b" " * 200_000 + b"}",
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "payload_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b'{"events": ['
            for _ in range(1_000):
                yield b" " * 1024

        streamed = httpx.post(
            f"{base}/events",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "payload_too_large"
        ok = httpx.post(f"{base}/events", json={"events": [click()]}, timeout=30)
        assert ok.status_code == 202


class FailingHistory:
    """The feature store, with history writes failing (DocumentDB's write path degraded)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes = 0

    def append_history(self, events: Any) -> None:
        self.writes += 1
        raise ConnectionError("write path down")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_failing_history_writes_do_not_open_the_read_paths_breaker(
    world: TinyWorld, lake_path: Path
) -> None:
    from recloop.serving.features import features_from_uri

    # read deadlines a loaded CI cannot miss: what is under test is which breaker opens
    settings = world_settings(world, lake_uri=lake_path.as_uri(), backend_timeout_ms=2_000)
    store = FailingHistory(features_from_uri(settings.features_uri, timeout_ms=1_000))
    runtime = build_runtime(settings, features=store)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        for _ in range(8):
            assert client.post("/events", json={"events": [click()]}).status_code == 202
        service = runtime.service
        assert service.history_guard.breaker.state == "open"
        assert store.writes == service.history_guard.breaker.failure_threshold
        assert service.features_guard.breaker.state == "closed"
        answer = client.get("/recommendations", params={"user_id": "u0", "k": 3}).json()
        assert answer["degraded"] is False and answer["source"] == "personalised"


def test_the_largest_valid_request_is_under_the_default_body_limit(client: TestClient) -> None:
    long = "/items/i1/" + "p" * 2000
    events = [click(context={"page": long, "referrer": long}) for _ in range(500)]
    response = client.post("/events", json={"events": events})
    assert response.status_code == 202, response.text[:200]


def test_a_json_body_without_a_json_content_type_is_told_so(client: TestClient) -> None:
    # curl -d and navigator.sendBeacon send text/plain or form types: the body is then not
    # parsed as JSON, and "not a valid dictionary" alone sends the client looking elsewhere.
    body = json.dumps({"events": [click()]})
    response = client.post("/events", content=body, headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    refused = client.post("/events", json={"events": []})  # JSON: the plain message
    assert refused.json()["error"]["message"] == "the request is not valid"
