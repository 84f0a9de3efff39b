"""Every model family is served with Elasticsearch configured as the candidate source.

No Elasticsearch server can run on this machine: the real elasticsearch-py client talks to the
honest double in tests/es_double.py, which rejects requests a real node would reject. Families
with item vectors (ALS, BPR) are indexed and queried there; item-kNN, EASE, popularity and
recent popularity have no vectors, so by design they are served from the model's own lists in
process, and nothing about them is sent to the cluster (docs/serving.md, "Candidate sources").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from es_double import Cluster, ClusterServer, double_node
from recloop.serving.app import create_app
from recloop.serving.candidates.base import Placement
from recloop.serving.candidates.elasticsearch import ElasticsearchCandidates
from recloop.serving.features.sqlite import SQLiteFeatureStore
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import free_port, tiny_world, world_settings

VECTOR_FAMILIES = {"als", "bpr"}


@pytest.mark.parametrize(
    "family", ["als", "bpr", "itemknn", "ease", "popularity", "popularity_recent"]
)
def test_each_family_is_served_with_elasticsearch_configured(tmp_path: Path, family: str) -> None:
    world = tiny_world(tmp_path / "w", family=family)
    settings = world_settings(world, watch_interval_seconds=3600)
    store = SQLiteFeatureStore(world.root / "features.db")
    cluster = Cluster()
    client = Elasticsearch("http://es.invalid:9200", node_class=double_node(cluster))
    source = ElasticsearchCandidates(client, catalogue=store.get_items)
    runtime = build_runtime(settings, features=store, candidates=source)
    with TestClient(create_app(settings, runtime)) as api:
        model = runtime.holder.current
        assert model is not None and model.version == world.version  # loaded, not rejected
        assert runtime.holder.rejected == {}
        expected = Placement.SERVED if family in VECTOR_FAMILIES else Placement.IN_PROCESS
        assert source.placement(model) is expected
        for user in ("u0", "u7", "u13"):
            body = api.get("/recommendations", params={"user_id": user}).json()
            assert body["degraded"] is False, body
            assert body["model_version"] == world.version and len(body["items"]) == 10
        similar = api.get("/items/i3/similar").json()
        assert similar["degraded"] is False and len(similar["items"]) > 0
    searches = [r for r in cluster.requests if r[1].endswith("/_search")]
    if family in VECTOR_FAMILIES:
        # The version's own index, built in full, answered the kNN queries.
        index = source.index_name(world.version)
        assert len(cluster.indexes[index]["docs"]) == model.n_items
        assert searches and all(r[1] == f"/{index}/_search" for r in searches)
        assert all("knn" in json.loads(r[2]) for r in searches)
    else:
        assert cluster.indexes == {} and searches == []


def test_a_cluster_down_at_load_leaves_the_index_pending_until_it_answers(
    tmp_path: Path,
) -> None:
    world = tiny_world(tmp_path / "w")
    settings = world_settings(world, watch_interval_seconds=3600, backend_check_seconds=3600)
    cluster = Cluster()
    server = ClusterServer(cluster, port=free_port())  # nothing listens yet
    source = ElasticsearchCandidates.from_url(server.url, timeout_ms=2000)
    runtime = build_runtime(settings, candidates=source)
    try:
        with TestClient(create_app(settings, runtime)) as api:
            model = runtime.holder.current
            assert model is not None and runtime.holder.rejected == {}  # served, not rejected
            assert source.placement(model) is Placement.PENDING
            body = api.get("/recommendations", params={"user_id": "u0"}).json()
            # The model's own lists answer: still personal, marked degraded.
            assert body["degraded"] is True and body["degraded_reasons"] == ["candidates"]
            assert body["source"] == "personalised" and len(body["items"]) == 10
            server.start()
            api.portal.call(runtime.backends.check)  # type: ignore[union-attr]
            runtime.repair()
            assert source.placement(model) is Placement.SERVED
            body = api.get("/recommendations", params={"user_id": "u0"}).json()
            assert body["degraded"] is False and body["source"] == "personalised"
            index = source.index_name(world.version)
            assert any(path == f"/{index}/_search" for _, path, _ in cluster.requests)
    finally:
        server.stop()


def test_without_lifespan_as_on_lambda_requests_start_the_repair(tmp_path: Path) -> None:
    # lambdas/api runs the app with lifespan off: no backend monitor loop. Requests start its
    # pass in a background thread, at most every BACKEND_CHECK_SECONDS.
    world = tiny_world(tmp_path / "w")
    settings = world_settings(world, backend_check_seconds=0.2)
    server = ClusterServer(Cluster(), port=free_port())  # nothing listens yet
    source = ElasticsearchCandidates.from_url(server.url, timeout_ms=2000)
    runtime = build_runtime(settings, candidates=source)
    api = TestClient(create_app(settings, runtime))  # no `with`: the lifespan does not run
    runtime.sink.start()  # as the Lambda handler does
    try:
        first = api.get("/recommendations", params={"user_id": "u0"}).json()
        assert first["degraded"] is True and first["degraded_reasons"] == ["candidates"]
        server.start()
        deadline = time.monotonic() + 30
        while api.get("/recommendations", params={"user_id": "u0"}).json()["degraded"]:
            assert time.monotonic() < deadline, "the index was never published"
            time.sleep(0.1)
        model = runtime.holder.current
        assert model is not None and source.placement(model) is Placement.SERVED
    finally:
        runtime.sink.close(5.0)
        server.stop()
