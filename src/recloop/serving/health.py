"""Backend health, checked in the background: reported, never a reason to be unready.

Readiness (GET /readyz) means a model is loaded. A feature store or candidate source that does
not answer degrades the answers (see service.py) but must never take every task out of the load
balancer at once: the monitor pings each backend every few seconds, in a thread under a
deadline, and records the outcome for /readyz's body and the `recloop_backend_up` gauge.
Requests never wait for a ping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
import anyio.to_thread

from recloop.serving.metrics import ServingMetrics


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """One backend's last health check."""

    up: bool
    detail: str  # "ok", or what went wrong
    checked_at: float  # time.monotonic()


class BackendMonitor:
    """Pings named backends on demand (`check`) and remembers the answers."""

    def __init__(
        self,
        pings: Mapping[str, Callable[[], None]],
        metrics: ServingMetrics,
        timeout_s: float = 3.0,  # above the backends' own 2 s ping deadline: their error shows
    ) -> None:
        self.pings = dict(pings)
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.status: dict[str, BackendStatus] = {}

    async def check(self) -> dict[str, BackendStatus]:
        """Ping every backend once (each in a thread, abandoned after `timeout_s`)."""
        for name, ping in self.pings.items():
            try:
                with anyio.fail_after(self.timeout_s):
                    await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
                status = BackendStatus(True, "ok", time.monotonic())
            except TimeoutError:
                detail = f"no answer within {self.timeout_s:.1f} s"
                status = BackendStatus(False, detail, time.monotonic())
            except Exception as exc:  # any failure is a report, never an error
                status = BackendStatus(
                    False, f"{type(exc).__name__}: {exc}"[:200], time.monotonic()
                )
            self.status[name] = status
            self.metrics.backend_up.labels(name).set(1 if status.up else 0)
        return dict(self.status)

    def up(self, name: str) -> bool:
        """True when the backend answered its last check (False before the first one)."""
        status = self.status.get(name)
        return status is not None and status.up

    def report(self) -> dict[str, str]:
        """Per backend: "ok", what failed, or "not checked yet"."""
        return {
            name: self.status[name].detail if name in self.status else "not checked yet"
            for name in self.pings
        }
