"""`recloop serve` without its feature store and candidate index: up, degraded, then recovered.

Real processes and real HTTP on loopback: `recloop serve` with two workers, the real pymongo
driver and the real elasticsearch-py client. No DocumentDB or Elasticsearch server can run on
this machine, so each is a double on a loopback port (tests/mongo_double.py speaks MongoDB's
wire protocol over mongomock, tests/es_double.py speaks Elasticsearch's REST API and rejects
what a real node would); both start out unreachable (nothing listens on their ports) and are
then brought up on the same ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from es_double import Cluster, ClusterServer
from mongo_double import MongoDouble
from recloop.serving.features.mongo import MongoFeatureStore
from recloop.serving.testing import CATEGORIES, free_port, tiny_world

USERS = [f"u{u}" for u in range(40)]


def load(url: str, requests: int = 160, threads: int = 8) -> list[httpx.Response]:
    """`requests` GET /recommendations from `threads` clients at once."""

    def one(n: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            return client.get("/recommendations", params={"user_id": USERS[n % len(USERS)]})

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(requests)))


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_serve_starts_and_answers_degraded_without_backends_then_recovers(
    tmp_path: Path,
) -> None:
    world = tiny_world(tmp_path / "world")
    mongo = MongoDouble().start()  # the catalogue is there before the outage
    seed = MongoFeatureStore.from_uri(mongo.uri, 2000)
    seed.upsert_items(world.items)
    seed.close()
    mongo.stop()
    cluster = Cluster()
    es = ClusterServer(cluster, port=free_port())  # reserved, nothing listens yet
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP_", "PROMETHEUS_"))}
    env |= {
        "RECLOOP_LAKE_URI": (tmp_path / "lake").as_uri(),
        "RECLOOP_REGISTRY_URI": world.registry.uri,
        "RECLOOP_FEATURES_URI": mongo.uri,
        "RECLOOP_CANDIDATES_URI": f"elasticsearch+{es.url}",
        "RECLOOP_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "RECLOOP_BACKEND_CHECK_SECONDS": "0.5",
        # Two cores shared with the test's clients and doubles (and CI): a loopback call can wait.
        "RECLOOP_BACKEND_TIMEOUT_MS": "2000",
    }
    recloop = Path(sys.executable).with_name("recloop")
    proc = subprocess.Popen(
        [str(recloop), "serve", "--port", str(port), "--workers", "2"], env=env, cwd=tmp_path
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        # Up and ready with both backends unreachable: readiness is the model only.
        wait_for(ready, 120, "readiness without backends")
        assert httpx.get(url + "/healthz").status_code == 200
        answers = load(url)
        assert [r.status_code for r in answers] == [200] * len(answers)
        bodies = [r.json() for r in answers]
        assert all(b["degraded"] and "features" in b["degraded_reasons"] for b in bodies)
        assert all(len(b["items"]) == 10 and b["model_version"] == world.version for b in bodies)

        def backends() -> dict[str, Any]:
            body: dict[str, Any] = httpx.get(url + "/readyz").json()["backends"]
            return body

        wait_for(lambda: backends()["features"] != "not checked yet", 30, "a backend check")
        assert backends()["features"] != "ok" and backends()["candidates"] != "ok"
        metrics = httpx.get(url + "/metrics").text
        assert 'recloop_backend_up{backend="features"} 0.0' in metrics
        assert 'recloop_degraded_responses_total{reason="features"}' in metrics

        # The backends come back on the same ports.
        mongo.start()
        es.start()
        wait_for(lambda: set(backends().values()) == {"ok"}, 60, "backends reported up")

        # Each worker recovers on its own (its breaker probes after its reset time, its backend
        # check publishes the index again), so recovery is judged on bursts that reach both
        # workers, not on a few requests that one worker may have answered. A loaded runner
        # (2 cores, CI) can make a loopback call miss its 2 s deadline now and then, and that
        # answer is degraded by design: recovery is most answers being normal again.
        latest: dict[str, Any] = {}

        def recovered() -> bool:
            answers = load(url)
            assert [r.status_code for r in answers] == [200] * len(answers)
            latest["bodies"] = [r.json() for r in answers]
            degraded = [b["degraded_reasons"] for b in latest["bodies"] if b["degraded"]]
            latest["degraded"] = degraded
            return len(degraded) <= len(answers) // 10

        try:
            wait_for(recovered, 90, "answers no longer degraded")
        except AssertionError:
            raise AssertionError(
                f"{len(latest['degraded'])} of {len(latest['bodies'])} still degraded: "
                f"{latest['degraded'][:5]}"
            ) from None
        bodies = latest["bodies"]
        assert all(b["source"] == "personalised" for b in bodies)
        # The candidate index serves again: the version's index was built and is queried.
        index = f"recloop-items-v{world.version}"
        assert len(cluster.indexes[index]["docs"]) == len(world.items)
        assert any(path == f"/{index}/_search" for _, path, _ in cluster.requests)
        assert "find" in mongo.commands
        # The catalogue the outage cut short was read again: category filters work (a third of
        # the 45 items per category, more than k: no top-up from other categories).
        category = CATEGORIES[0]
        by_category = httpx.get(
            url + "/recommendations",
            params={"user_id": "u0", "category": category, "exclude_seen": "false"},
        ).json()
        known = {i.item_id: i.categories for i in world.items}
        assert by_category["items"] and all(
            category in known[i["item_id"]] for i in by_category["items"]
        )
        metrics = httpx.get(url + "/metrics").text
        assert 'recloop_backend_up{backend="features"} 1.0' in metrics
        assert 'recloop_backend_up{backend="candidates"} 1.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mongo.stop()
        es.stop()
