"""Server CPU per request: /recommendations against /healthz, in one process, no network.

The same world as bench/serve.py (an ALS bundle of --items x 64 factors and --users users,
approved in a file:// registry; item metadata and 10% of the users' recent histories in the
SQLite feature store), served by `create_app` with its lifespan started; the ASGI app is then
called directly, so the figures are the app's own CPU time (the event sink's thread included)
without uvicorn, the network or wrk. CPU time, not wall time: it holds on a shared machine.
Each round: --requests calls of GET /healthz, then --requests GET /recommendations for users
not asked before (first reads of their history); the best round of each is kept.

Usage: .venv/bin/python bench/serve_cpu.py [--items N] [--users N] [--requests N] [--rounds R]
                                           [--profile]
The last line printed is one JSON object; `ratio` = healthz CPU / recommendations CPU, the
throughput ratio a CPU-bound server would reach (uvicorn adds about the same to both).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recloop.config import Settings
from recloop.registry import registry_from_uri
from recloop.serving.app import create_app
from serve import fill_features, synthetic_bundle


async def call(app: Any, path: str, query: str) -> int:
    """One GET through the whole ASGI app; the response status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def measure(app: Any, args: argparse.Namespace) -> dict[str, Any]:
    runtime = app.state.runtime
    await runtime.start()
    try:
        rng = np.random.default_rng(0)
        n = args.requests
        users = [f"u{int(u)}" for u in rng.integers(0, args.users, 500 + n * args.rounds)]
        for user in users[:500]:  # warm-up
            assert await call(app, "/recommendations", f"user_id={user}&k=10") == 200
        health, recs = [], []
        for r in range(args.rounds):
            start = time.process_time()
            for _ in range(n):
                await call(app, "/healthz", "")
            health.append((time.process_time() - start) / n * 1000)
            batch = users[500 + r * n : 500 + (r + 1) * n]
            start = time.process_time()
            for user in batch:
                await call(app, "/recommendations", f"user_id={user}&k=10")
            recs.append((time.process_time() - start) / n * 1000)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for user in users[500 : 500 + n]:
                await call(app, "/recommendations", f"user_id={user}&k=10")
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(40)
    finally:
        await runtime.stop()
    return {
        "healthz_cpu_ms_rounds": [round(x, 3) for x in health],
        "recs_cpu_ms_rounds": [round(x, 3) for x in recs],
        "healthz_cpu_ms": round(min(health), 3),
        "recs_cpu_ms": round(min(recs), 3),
        "ratio": round(min(health) / min(recs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="cProfile one more round")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="recloop-bench-serve-cpu-"))
    try:
        registry = registry_from_uri((root / "registry").as_uri())
        bundle = synthetic_bundle(root / "b0", args.items, args.users, 64, seed=0)
        registry.approve(registry.register(bundle, {}, None).version, "bench")
        fill_features(root / "features.db", args.items, args.users)
        settings = Settings(
            lake_uri=(root / "lake").as_uri(),
            registry_uri=registry.uri,
            features_uri="sqlite:///" + str(root / "features.db"),
            model_cache_dir=root / "cache",
            watch_interval_seconds=3600.0,
            backend_timeout_ms=100,
        )
        result = asyncio.run(measure(create_app(settings), args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"items": args.items, "users": args.users, **result}))


if __name__ == "__main__":
    main()
