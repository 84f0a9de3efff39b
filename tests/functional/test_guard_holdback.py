"""The guard window's two arms in serving: a hashed share of users stays on the previous
champion, answers carry the version that served them, and a rollback needs no download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from recloop.serving.app import create_app
from recloop.serving.hotswap import holdback_user
from recloop.serving.runtime import build_runtime
from recloop.serving.testing import fit_bundle, publish, tiny_world, world_settings


class CountingRegistry:
    """A real registry that counts downloads."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.uri = registry.uri
        self.downloads = 0

    def champion(self) -> Any:
        return self.registry.champion()

    def download(self, version: str, dest: Path) -> Path:
        self.downloads += 1
        path: Path = self.registry.download(version, dest)
        return path


def test_the_hash_puts_a_stable_share_of_users_in_the_holdback() -> None:
    users = [f"u{i}" for i in range(20_000)]
    held = [u for u in users if holdback_user(u, "7", 0.15)]
    assert 0.14 < len(held) / len(users) < 0.16
    assert held == [u for u in users if holdback_user(u, "7", 0.15)]  # deterministic
    other = {u for u in users if holdback_user(u, "8", 0.15)}
    assert len(other & set(held)) < 0.3 * len(held)  # each guard window draws its own users
    assert not any(holdback_user(u, "7", 0.0) for u in users[:1000])


def test_in_the_guard_window_held_back_users_get_the_previous_champion(tmp_path: Path) -> None:
    world = tiny_world(tmp_path / "w")
    counting = CountingRegistry(world.registry)
    settings = world_settings(
        world, watch_interval_seconds=3600, guard_holdback_share=0.2, guard_window_minutes=60
    )
    runtime = build_runtime(settings, registry=counting)
    assert runtime.watcher is not None
    users = [f"u{i}" for i in range(60)]
    with TestClient(create_app(settings, runtime)) as client:
        old = world.version
        new = publish(world.registry, fit_bundle(tmp_path / "new", seed=3))
        assert runtime.watcher.check_once() is not None

        def versions() -> dict[str, str]:
            return {
                u: client.get("/recommendations", params={"user_id": u}).json()["model_version"]
                for u in users
            }

        served = versions()
        expected = {u: old if holdback_user(u, new, 0.2) else new for u in users}
        assert served == expected and old in served.values() and new in served.values()
        assert versions() == served  # a user stays in their arm
        # A rollback inside the window: back to the held model, no download.
        downloads = counting.downloads
        world.registry.reject(new, "lost side by side")
        assert runtime.watcher.check_once() is not None
        assert counting.downloads == downloads
        assert set(versions().values()) == {old}
        assert runtime.holder.holdback is None


def test_without_a_share_every_user_gets_the_new_champion(tmp_path: Path) -> None:
    world = tiny_world(tmp_path / "w")
    settings = world_settings(world, watch_interval_seconds=3600, guard_holdback_share=0.0)
    runtime = build_runtime(settings)
    assert runtime.watcher is not None
    with TestClient(create_app(settings, runtime)) as client:
        new = publish(world.registry, fit_bundle(tmp_path / "new", seed=3))
        assert runtime.watcher.check_once() is not None
        answers = {
            client.get("/recommendations", params={"user_id": f"u{i}"}).json()["model_version"]
            for i in range(30)
        }
        assert answers == {new} and runtime.holder.holdback is None
