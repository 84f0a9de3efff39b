"""The API end to end in-process: real model, real SQLite, real lake, real registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recloop.serving.app import create_app
from recloop.serving.testing import TinyWorld, tiny_world, world_settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return tiny_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def client(world: TinyWorld, tmp_path: Path) -> Iterator[TestClient]:
    settings = world_settings(world, lake_uri=(tmp_path / "lake").as_uri())
    with TestClient(create_app(settings)) as client:
        yield client


def click(user: str, item: str, rec_id: str | None = None) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "event_type": "click",
        "timestamp": datetime.now(UTC).isoformat(),
        "user_id": user,
        "item_id": item,
        "rec_id": rec_id,
    }


def test_known_user_gets_k_items_of_their_taste(client: TestClient, world: TinyWorld) -> None:
    body = client.get("/recommendations", params={"user_id": "u0", "k": 5}).json()
    assert body["model_version"] == world.version
    assert body["source"] == "personalised" and body["degraded"] is False
    assert len(body["items"]) == 5
    taste = world.user_category["u0"]
    # The best two are of the user's taste; the diversity cap (40% of k) keeps it at two.
    assert all(taste in item["categories"] for item in body["items"][:2]), body["items"]
    assert sum(taste in item["categories"] for item in body["items"]) == 2
    assert all(item["reason"] and item["title"] for item in body["items"])


def test_unknown_user_and_visitor_get_cold_start_not_an_error(client: TestClient) -> None:
    for params in ({"user_id": "nobody"}, {"visitor_id": "v-123"}):
        response = client.get("/recommendations", params=params)
        assert response.status_code == 200
        body = response.json()
        assert body["source"] == "cold_start" and len(body["items"]) == 10
    # Fresh items (published today) are boosted into a cold start answer.
    ids = [i["item_id"] for i in client.get("/recommendations?user_id=x").json()["items"]]
    assert {"i42", "i43", "i44"} & set(ids)


def test_click_changes_the_next_answer_at_once(client: TestClient) -> None:
    first = client.get("/recommendations", params={"visitor_id": "v-click", "k": 10}).json()
    assert first["source"] == "cold_start"
    target = next(i["item_id"] for i in first["items"] if "comedy" in i["categories"])
    response = client.post("/events", json={"events": [click("v-click", target, first["rec_id"])]})
    assert response.status_code == 202 and response.json() == {"accepted": 1}
    # The event says user_id, so the next request asks as that user.
    second = client.get("/recommendations", params={"user_id": "v-click", "k": 10}).json()
    ids = [i["item_id"] for i in second["items"]]
    assert target not in ids
    assert second["source"] == "personalised"
    assert ids != [i["item_id"] for i in first["items"]]


def test_bad_input_is_422_with_field_messages(client: TestClient) -> None:
    for params in ({"user_id": "u0", "k": 0}, {"user_id": "u0", "k": 101}, {"k": "x"}, {}):
        response = client.get("/recommendations", params=params)
        assert response.status_code == 422, params
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["fields"], error
    bad = client.post("/events", json={"events": [{"event_type": "click"}]})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} >= {"body.events.0.event_id"}


def test_similar_items_share_the_category(client: TestClient) -> None:
    body = client.get("/items/i0/similar", params={"k": 5}).json()
    assert body["item_id"] == "i0" and len(body["items"]) == 5
    assert "i0" not in [i["item_id"] for i in body["items"]]
    assert sum("action" in i["categories"] for i in body["items"]) >= 3
    unknown = client.get("/items/never-seen/similar")
    assert unknown.status_code == 200 and unknown.json()["items"]


def test_ops_endpoints(client: TestClient, world: TinyWorld) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    version = client.get("/version").json()
    assert version["model_version"] == world.version and version["family"] == "als"
    client.get("/recommendations?user_id=u1")
    metrics = client.get("/metrics").text
    assert 'recloop_http_requests_total{route="/recommendations",status="200"}' in metrics
    assert "recloop_model_info" in metrics
    assert client.get("/nope").json()["error"]["code"] == "not_found"


def test_an_item_made_unavailable_leaves_the_answers_within_a_second(
    client: TestClient, world: TinyWorld, tmp_path: Path
) -> None:
    import time
    from dataclasses import replace

    from recloop.serving.features import features_from_uri

    params = {"user_id": "u1", "k": 5}
    top = client.get("/recommendations", params=params).json()["items"][0]["item_id"]
    store = features_from_uri(world.features_uri)
    original = next(i for i in world.items if i.item_id == top)
    store.upsert_items([replace(original, available=False)])
    try:
        time.sleep(1.1)  # serving asks the store's items version at most once a second
        ids = [i["item_id"] for i in client.get("/recommendations", params=params).json()["items"]]
        assert top not in ids and len(ids) == 5
    finally:
        store.upsert_items([original])
        store.close()


def test_the_lean_recommendations_route_keeps_the_documented_contract(client: TestClient) -> None:
    assert client.get("/recommendations", params={"user_id": "u1"}).status_code == 200
    wrong = client.post("/recommendations")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    bad = client.get("/recommendations", params={"user_id": "u1", "k": 0})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "query.k"
    metrics = client.get("/metrics").text
    assert 'recloop_http_requests_total{route="/recommendations",status="405"}' in metrics
    operation = client.get("/openapi.json").json()["paths"]["/recommendations"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"user_id", "visitor_id", "k"}
    assert "RecommendationsPublic" in str(operation["responses"]["200"])
