"""`recloop serve` for real: two workers on loopback, metrics summed, SIGTERM drains the events."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from recloop.lake import Lake
from recloop.serving.testing import free_port, tiny_world

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_with_two_workers_sums_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    world = tiny_world(tmp_path / "world")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP_", "PROMETHEUS_"))}
    env |= {
        "RECLOOP_LAKE_URI": (tmp_path / "lake").as_uri(),
        "RECLOOP_REGISTRY_URI": world.registry.uri,
        "RECLOOP_FEATURES_URI": world.features_uri,
        "RECLOOP_MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    recloop = Path(sys.executable).with_name("recloop")
    proc = subprocess.Popen(
        [str(recloop), "serve", "--port", str(port), "--workers", "2"], env=env, cwd=tmp_path
    )
    url = f"http://127.0.0.1:{port}"
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2:
            assert time.monotonic() < deadline, "two workers never answered"
            assert proc.poll() is None, "recloop serve exited"
            try:
                info = httpx.get(url + "/version", timeout=2).json()
                if info["model_version"] == world.version:
                    pids.add(info["worker_pid"])
            except httpx.HTTPError:
                time.sleep(0.1)
        for pid in pids:  # the allocator settings reach the workers (docs/benchmarks.md)
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"MALLOC_ARENA_MAX=2" in environ
            assert b"ARROW_DEFAULT_MEMORY_POOL=system" in environ
            assert b"MALLOC_MMAP_THRESHOLD_=131072" in environ
        with httpx.Client(base_url=url) as client:
            for _ in range(30):
                assert client.get("/healthz").status_code == 200
            text = client.get("/metrics").text
        counted = re.search(
            r'recloop_http_requests_total\{route="/healthz",status="200"\} ([\d.]+)', text
        )
        assert counted is not None and float(counted.group(1)) == 30.0  # both workers' counts
        events = [
            {
                "event_id": f"drain-{n}",
                "event_type": "click",
                "timestamp": datetime.now(UTC).isoformat(),
                "user_id": "u1",
                "item_id": f"i{n}",
            }
            for n in range(3)
        ]
        assert httpx.post(url + "/events", json={"events": events}).status_code == 202
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    # The events were still queued (the lake sink lingers 1 s): shutdown delivered them.
    table, _ = Lake.from_uri((tmp_path / "lake").as_uri()).read_events()
    # client event ids are stored in the clients' namespace (c-<id>, issue 14)
    assert {"c-drain-0", "c-drain-1", "c-drain-2"} <= set(table.column("event_id").to_pylist())
