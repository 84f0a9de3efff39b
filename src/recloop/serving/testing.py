"""A tiny, fully real serving world for tests, demos and benchmarks.

`tiny_world(root)` fits a real model on synthetic data whose answer is known (each user likes
one category), saves a bundle, registers and approves it in a file:// registry and fills a
SQLite feature store with the items' metadata. Nothing here is a stub: it is the same code path
production data takes, at toy size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import SecretStr

from recloop.serving.features.base import ItemFeatures

CATEGORIES = ("action", "comedy", "drama")


@dataclass
class TinyWorld:
    """What `tiny_world` built."""

    root: Path
    registry: Any
    features_uri: str
    items: list[ItemFeatures]
    user_category: dict[str, str]
    version: str


def item_features(n_items: int, now: datetime | None = None) -> list[ItemFeatures]:
    """Items i0..i{n-1}; category by i % 3; the last three were published today."""
    now = now or datetime.now(UTC)
    return [
        ItemFeatures(
            item_id=f"i{i}",
            title=f"Title {i}",
            categories=(CATEGORIES[i % len(CATEGORIES)],),
            available=True,
            published_at=now - (timedelta(hours=1) if i >= n_items - 3 else timedelta(days=400)),
        )
        for i in range(n_items)
    ]


def interactions(n_users: int, n_items: int, seed: int = 0) -> tuple[sp.csr_matrix, dict[str, str]]:
    """Each user u clicks ~8 items of category u % 3, popularity skewed to low item ids."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    taste: dict[str, str] = {}
    for u in range(n_users):
        cat = u % len(CATEGORIES)
        taste[f"u{u}"] = CATEGORIES[cat]
        pool = np.arange(cat, n_items, len(CATEGORIES))
        weights = 1.0 / (1.0 + np.arange(len(pool)))
        picked = rng.choice(pool, size=min(8, len(pool)), replace=False, p=weights / weights.sum())
        rows += [u] * len(picked)
        cols += picked.tolist()
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items), dtype=np.float32
    )
    return matrix, taste


def fit_bundle(
    folder: Path,
    family: str = "als",
    n_users: int = 60,
    n_items: int = 45,
    seed: int = 0,
    **params: Any,
) -> Path:
    """Fit a real model of `family` on the synthetic data and save its bundle in `folder`."""
    from recloop.training.bundle import BundleMeta, ModelBundle
    from recloop.training.models import make

    matrix, _ = interactions(n_users, n_items, seed)
    defaults: dict[str, Any] = (
        # Explicit, toy-sized parameters: the family's defaults are tuned for real data.
        {
            "factors": 8,
            "iterations": 8,
            "regularization": 0.05,
            "alpha": 2.0,
            "weighting": "log",
            "random_state": seed,
            "num_threads": 1,
        }
        if family == "als"
        else {}
    )
    model = make(family, **{**defaults, **params})
    # Recent popularity weighs each interaction by its age: synthetic ages, 0-29 days.
    ages = matrix.copy()
    ages.data = (np.arange(matrix.nnz) % 30).astype(np.float32)
    model = model.fit(matrix, ages if model.needs_ages else None)
    bundle = ModelBundle(
        model=model,
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_popularity=np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32),
        meta=BundleMeta(
            family=family,
            params=model.params,
            train_start=None,
            train_end=None,
            snapshot_digest=f"synthetic-{seed}",
            snapshot_rows=int(matrix.nnz),
        ),
        history=matrix,
    )
    return bundle.save(folder)


def publish(registry: Any, bundle_dir: Path, reason: str = "test") -> str:
    """Register a bundle and approve it; returns its version."""
    version = registry.register(bundle_dir, {"ndcg@10": 0.5}, None).version
    registry.approve(version, reason)
    return str(version)


def tiny_world(root: Path, family: str = "als", n_users: int = 60, n_items: int = 45) -> TinyWorld:
    """A registry with one approved champion and a feature store with the items' metadata."""
    from recloop.registry import registry_from_uri
    from recloop.serving.features.sqlite import SQLiteFeatureStore

    root.mkdir(parents=True, exist_ok=True)
    registry = registry_from_uri((root / "registry").as_uri())
    version = publish(registry, fit_bundle(root / "bundle-0", family, n_users, n_items))
    store = SQLiteFeatureStore(root / "features.db")
    items = item_features(n_items)
    store.upsert_items(items)
    store.close()
    _, taste = interactions(n_users, n_items)
    return TinyWorld(
        root=root,
        registry=registry,
        features_uri="sqlite:///" + str(root / "features.db"),
        items=items,
        user_category=taste,
        version=version,
    )


def world_settings(world: TinyWorld, **overrides: Any) -> Any:
    """Settings that point every backend at the world (lake, registry, features, cache)."""
    from recloop.config import Settings

    values: dict[str, Any] = {
        "lake_uri": (world.root / "lake").as_uri(),
        "registry_uri": world.registry.uri,
        "features_uri": world.features_uri,
        "model_cache_dir": world.root / "serving-cache",
        "watch_interval_seconds": 0.2,
        **overrides,
    }
    return Settings(**values)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(settings: Any, workers: int = 1, startup_timeout: float = 30.0) -> Iterator[str]:
    """A real uvicorn server process for `settings` on loopback; yields its base URL.

    Started as `python -m uvicorn` with the settings in RECLOOP_* variables, ready once /readyz
    answers 200, stopped with SIGTERM (which drains requests in flight) when the block ends.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    from recloop.serving.workerenv import apply_worker_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    apply_worker_env(env)  # as `recloop serve` starts its workers
    for name in sorted(settings.model_fields_set):  # only what the caller set explicitly
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"RECLOOP_{name.upper()}"] = (
            json.dumps(list(value)) if isinstance(value, list | tuple) else str(value)
        )
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "recloop.serving.app:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
        "--timeout-worker-healthcheck",  # the default 5 s kills workers still importing
        "60",
    ]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
