"""GET /users/sample: the users the served model knows, for the web page's picker."""

from __future__ import annotations

from collections.abc import Iterator
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


def test_the_sample_holds_users_the_model_knows_and_they_get_personal_answers(
    client: TestClient, world: TinyWorld
) -> None:
    body = client.get("/users/sample", params={"n": 3}).json()
    assert body["model_version"] == world.version
    assert len(body["user_ids"]) == 3
    for user in body["user_ids"]:
        answer = client.get("/recommendations", params={"user_id": user}).json()
        assert answer["source"] == "personalised"


def test_a_sample_size_out_of_range_is_a_422(client: TestClient) -> None:
    for n in (0, 101):
        response = client.get("/users/sample", params={"n": n})
        assert response.status_code == 422
        assert response.json()["error"]["fields"][0]["field"] == "query.n"
