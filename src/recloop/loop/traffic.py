"""Simulated users against the live API: organic browsing and reactions to recommendations.

Time runs faster in the world than on the wall: a `Timeline` maps world time to wall time
linearly (`speed` world seconds per wall second), so days of behaviour pass in a demo's
minutes while every event the API and the lake see carries a real, recent wall-clock time.

Per tick, the `TrafficDriver`
- posts the world's organic views and clicks of the tick's world-time slice to POST /events
  (what the web tracker sends), retimed to the wall clock, and
- has a sample of users ask GET /recommendations; each clicks the shown items by the world's
  click model at the current world time and posts the clicks with the list's rec_id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from recloop.monitoring.service_metrics import SnapshotRecorder
from recloop.sim import Traffic, World

log = logging.getLogger(__name__)

_POST_CHUNK = 500  # POST /events takes at most 500 events


@dataclass(frozen=True)
class Timeline:
    """World time <-> wall time: `world_at_wall0` happens at `wall0`, `speed` times faster."""

    wall0: datetime
    world_at_wall0: datetime
    speed: float

    def world(self, wall: datetime) -> datetime:
        return self.world_at_wall0 + (wall - self.wall0) * self.speed

    def wall(self, world: datetime) -> datetime:
        return self.wall0 + (world - self.world_at_wall0) / self.speed

    def wall_ms(self, world_ms: np.ndarray) -> np.ndarray:
        base_world = self.world_at_wall0.timestamp() * 1000
        base_wall = self.wall0.timestamp() * 1000
        return (base_wall + (world_ms - base_world) / self.speed).astype(np.int64)


def retimed_records(
    world: World, start: datetime, end: datetime, timeline: Timeline
) -> list[dict[str, Any]]:
    """The world's tracker events in world time [start, end), stamped with wall-clock times."""
    return _retimed(world.generate(start, end), timeline)


def _retimed(traffic: Traffic, timeline: Timeline) -> list[dict[str, Any]]:
    if not len(traffic):
        return []
    traffic.ts_ms = timeline.wall_ms(traffic.ts_ms)
    return traffic.tracker_records()


class DayCache:
    """World traffic drawn a whole day at a time (drawing is per day), sliced per tick."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._days: dict[datetime, Traffic] = {}

    def clear(self) -> None:
        """Forget drawn days: the world changed (a taste shift, new content)."""
        self._days.clear()

    def window(self, start: datetime, end: datetime) -> Traffic:
        parts = []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        while day < end:
            if day not in self._days:
                self._days = {d: t for d, t in self._days.items() if d >= day - timedelta(days=1)}
                self._days[day] = self.world.generate(day, day + timedelta(days=1))
            traffic = self._days[day]
            parts.append(traffic.take((traffic.ts_ms >= lo) & (traffic.ts_ms < hi)))
            day += timedelta(days=1)
        return Traffic.concat(self.world, parts)


@dataclass
class TrafficStats:
    """Running totals of what the simulated users did."""

    requests: int = 0
    errors: int = 0
    impressions: int = 0
    clicked_lists: int = 0
    clicks: int = 0
    organic_events: int = 0
    by_version: dict[str, list[int]] = field(default_factory=dict)  # version -> [lists, clicked]
    recent: list[tuple[float, str, bool]] = field(default_factory=list)  # (time, version, click)

    def record(self, version: str, clicked: bool) -> None:
        self.impressions += 1
        self.clicked_lists += int(clicked)
        pair = self.by_version.setdefault(version, [0, 0])
        pair[0] += 1
        pair[1] += int(clicked)
        self.recent.append((time.monotonic(), version, clicked))

    def recent_ctr(self, seconds: float) -> tuple[float, int, str | None]:
        """CTR of the lists shown in the last `seconds`, their number and the latest version."""
        cutoff = time.monotonic() - seconds
        self.recent = [r for r in self.recent if r[0] >= cutoff]
        if not self.recent:
            return 0.0, 0, None
        hits = sum(1 for r in self.recent if r[2])
        return hits / len(self.recent), len(self.recent), self.recent[-1][1]


class TrafficDriver:
    """A background thread that drives simulated users against the API, tick by tick."""

    def __init__(
        self,
        world: World,
        base_url: str,
        timeline: Timeline,
        *,
        requests_per_second: float = 40.0,
        k: int = 10,
        tick: float = 0.25,
        seed: int = 0,
        workers: int = 4,
        user_ids: list[str] | None = None,
        recorder: SnapshotRecorder | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.world = world
        self.timeline = timeline
        self.rate = requests_per_second
        self.k = k
        self.tick = tick
        self.rng = np.random.default_rng([seed, 77])
        self.users = user_ids or list(world.user_ids)
        self.stats = TrafficStats()
        # Client-side latency and status of every call, for the dashboard's service charts.
        self.recorder = recorder
        # `headers`: what the path in front of the API adds (CloudFront's origin header on AWS).
        self._client = httpx.Client(base_url=base_url, timeout=10.0, headers=headers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim-user")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: list[Callable[[datetime], None]] = []
        self._lock = threading.Lock()
        self._organic_until: datetime | None = None
        self._days = DayCache(world)
        self._carry = 0.0

    # ---- control ----------------------------------------------------------------------------

    def start(self) -> None:
        self._organic_until = self.timeline.world(datetime.now(UTC))
        self._thread = threading.Thread(target=self._run, name="sim-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._pool.shutdown(wait=True)
        self._client.close()

    def at_next_tick(self, job: Callable[[datetime], None]) -> None:
        """Run `job(world_now)` in the traffic thread before its next tick (world changes)."""
        with self._lock:
            self._jobs.append(job)

    # ---- ticks ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._tick()
            except Exception:  # one failed tick must not end the simulation
                log.exception("simulated traffic tick failed")
            self._stop.wait(max(0.0, self.tick - (time.monotonic() - started)))

    def _tick(self) -> None:
        now = datetime.now(UTC)
        world_now = self.timeline.world(now)
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job(world_now)
            self._days.clear()
        self._organic(world_now)
        self._carry += self.rate * self.tick
        n = int(self._carry)
        self._carry -= n
        if n:
            users = self.rng.choice(len(self.users), size=n, replace=n > len(self.users))
            seeds = self.rng.integers(0, 2**32, size=n)
            list(self._pool.map(self._visit, [self.users[u] for u in users], seeds.tolist()))

    def _organic(self, world_now: datetime) -> None:
        lo = self._organic_until or world_now
        if world_now <= lo:
            return
        records = _retimed(self._days.window(lo, world_now), self.timeline)
        self._organic_until = world_now
        for start in range(0, len(records), _POST_CHUNK):
            self._post(records[start : start + _POST_CHUNK])
        self.stats.organic_events += len(records)

    def _timed(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = send()
        except httpx.HTTPError:
            if self.recorder is not None:
                self.recorder.record(time.perf_counter() - started, 599)
            raise
        if self.recorder is not None:
            degraded = response.status_code == 200 and b'"degraded":true' in response.content
            self.recorder.record(time.perf_counter() - started, response.status_code, degraded)
        return response

    def _post(self, events: list[dict[str, Any]]) -> bool:
        try:
            response = self._timed(lambda: self._client.post("/events", json={"events": events}))
        except httpx.HTTPError as exc:
            log.warning("POST /events failed: %s", exc)
            self.stats.errors += 1
            return False
        if response.status_code != 202:
            log.warning("POST /events answered %s: %s", response.status_code, response.text[:200])
            self.stats.errors += 1
            return False
        return True

    def _visit(self, user_id: str, seed: int) -> None:
        """One user asks for recommendations and clicks what they like."""
        try:
            response = self._timed(
                lambda: self._client.get(
                    "/recommendations", params={"user_id": user_id, "k": self.k}
                )
            )
        except httpx.HTTPError as exc:
            log.warning("GET /recommendations failed: %s", exc)
            self.stats.errors += 1
            return
        self.stats.requests += 1
        if response.status_code != 200:
            self.stats.errors += 1
            return
        body = response.json()
        shown = [item["item_id"] for item in body["items"]]
        if not shown:
            return
        wall = datetime.now(UTC)
        rng = np.random.default_rng(seed)
        clicked = self.world.choose_clicks(user_id, shown, self.timeline.world(wall), rng)
        self.stats.record(str(body["model_version"]), bool(clicked))
        if not clicked:
            return
        self.stats.clicks += len(clicked)
        events = [
            {
                "event_id": f"click-{body['rec_id']}-{item}",
                "event_type": "click",
                "timestamp": (wall + timedelta(milliseconds=200 * (n + 1))).isoformat(),
                "user_id": user_id,
                "item_id": item,
                "rec_id": body["rec_id"],
                "model_version": body["model_version"],
                "source": "api",
            }
            for n, item in enumerate(clicked)
        ]
        self._post(events)
