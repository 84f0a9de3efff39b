"""Service-metric snapshots: a small JSON-lines time series the API (or the loop) appends to.

Each line covers one interval [start, end) of one serving process:

    {"start": "...", "end": "...", "instance": "host:pid", "model_version": "v3",
     "requests": 1200, "status": {"200": 1190, "503": 10}, "degraded": 4,
     "latency_bounds_ms": [1, 2, 5, ...], "latency_counts": [0, 3, 90, ..., 0],
     "p50_ms": 4.1, "p90_ms": 9.8, "p99_ms": 31.0}

Latency is kept as a fixed-bucket histogram, so that snapshots of several workers (or of several
intervals) merge exactly before quantiles are taken; p50/p90/p99 are there for a quick read.
The dashboard reads this; Prometheus and EMF remain the production metrics paths.
"""

from __future__ import annotations

import bisect
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from recloop.config import Settings
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.jsonl import JsonLinesLog

if TYPE_CHECKING:
    import pandas as pd

# Upper bounds in milliseconds; one more bucket holds everything slower.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000,
)  # fmt: skip


def quantile_from_histogram(
    counts: Sequence[int] | np.ndarray, q: float, bounds: Sequence[float] = LATENCY_BOUNDS_MS
) -> float | None:
    """The q-quantile of a bucketed distribution, interpolated linearly inside its bucket."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0:
        return None
    edges = np.concatenate([[0.0], np.asarray(bounds, dtype=float)])
    target = q * total
    cum = np.cumsum(c)
    i = int(np.searchsorted(cum, target, side="left"))
    if i >= len(bounds):  # the overflow bucket has no upper edge: report its lower one
        return float(bounds[-1])
    below = cum[i - 1] if i > 0 else 0.0
    share = (target - below) / c[i] if c[i] else 0.0
    return float(edges[i] + share * (edges[i + 1] - edges[i]))


@dataclass(frozen=True)
class ServiceSnapshot:
    start: datetime
    end: datetime
    requests: int
    status: dict[str, int] = field(default_factory=dict)
    degraded: int = 0
    latency_counts: tuple[int, ...] = ()
    model_version: str | None = None
    instance: str = ""

    @property
    def errors(self) -> int:
        """Responses with a 5xx status: the service failed, not the caller."""
        return sum(n for code, n in self.status.items() if code.startswith("5"))

    def quantile_ms(self, q: float) -> float | None:
        return quantile_from_histogram(self.latency_counts, q)

    def to_dict(self) -> dict[str, Any]:
        p = {f"p{int(q * 100)}_ms": self.quantile_ms(q) for q in (0.5, 0.9, 0.99)}
        return {
            "start": self.start.astimezone(UTC).isoformat(),
            "end": self.end.astimezone(UTC).isoformat(),
            "instance": self.instance,
            "model_version": self.model_version,
            "requests": self.requests,
            "status": self.status,
            "degraded": self.degraded,
            "latency_bounds_ms": list(LATENCY_BOUNDS_MS),
            "latency_counts": list(self.latency_counts),
            **{k: None if v is None else round(v, 3) for k, v in p.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceSnapshot:
        bounds = data.get("latency_bounds_ms")
        if bounds is not None and tuple(float(b) for b in bounds) != LATENCY_BOUNDS_MS:
            raise MonitorError("service snapshot written with other latency buckets")
        return cls(
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            requests=int(data["requests"]),
            status={str(k): int(v) for k, v in (data.get("status") or {}).items()},
            degraded=int(data.get("degraded", 0)),
            latency_counts=tuple(int(c) for c in data.get("latency_counts") or ()),
            model_version=data.get("model_version"),
            instance=str(data.get("instance", "")),
        )


class SnapshotRecorder:
    """Counts requests in memory; `flush()` returns the interval's snapshot and starts anew.

    Thread-safe; meant for a middleware: `recorder.record(seconds, status, degraded)`.
    """

    def __init__(self, instance: str | None = None, now: datetime | None = None) -> None:
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._reset(now or datetime.now(UTC))

    def _reset(self, start: datetime) -> None:
        self._start = start
        self._requests = 0
        self._degraded = 0
        self._status: dict[str, int] = {}
        self._counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)

    def record(self, seconds: float, status: int, degraded: bool = False) -> None:
        bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000.0)
        with self._lock:
            self._requests += 1
            self._degraded += int(degraded)
            self._status[str(status)] = self._status.get(str(status), 0) + 1
            self._counts[bucket] += 1

    def flush(
        self, now: datetime | None = None, model_version: str | None = None
    ) -> ServiceSnapshot:
        """The snapshot of [last flush, now); counters start again at zero."""
        now = now or datetime.now(UTC)
        with self._lock:
            snap = ServiceSnapshot(
                self._start, now, self._requests, dict(self._status), self._degraded,
                tuple(self._counts), model_version, self.instance,
            )  # fmt: skip
            self._reset(now)
        return snap


class ServiceMetricsLog:
    """Append snapshots to, and read them from, a JSON-lines log (file:// or s3://)."""

    def __init__(self, uri: str, s3_client: Any = None) -> None:
        self.uri = uri
        self._log = JsonLinesLog(uri, s3_client=s3_client)

    @classmethod
    def from_settings(cls, settings: Settings, s3_client: Any = None) -> ServiceMetricsLog:
        return cls(settings.monitor_service_metrics_uri, s3_client=s3_client)

    def append(self, *snapshots: ServiceSnapshot) -> None:
        self._log.append(*(s.to_dict() for s in snapshots))

    def read(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[ServiceSnapshot]:
        """Snapshots whose interval ends in (since, until], oldest first."""
        snaps = [ServiceSnapshot.from_dict(r) for r in self._log.read()]
        return sorted(
            (
                s
                for s in snaps
                if (since is None or s.end > since) and (until is None or s.end <= until)
            ),
            key=lambda s: s.end,
        )


def service_series(snapshots: Sequence[ServiceSnapshot], freq: str = "1min") -> pd.DataFrame:
    """Snapshots merged into time buckets (by interval start), across instances.

    Columns: bucket, requests, errors, error_rate, degraded, p50_ms, p90_ms, p99_ms.
    """
    import pandas as pd  # only the dashboard needs it; the API imports this module too

    columns = ["bucket", "requests", "errors", "error_rate", "degraded", "p50_ms", "p90_ms",
               "p99_ms"]  # fmt: skip
    if not snapshots:
        return pd.DataFrame({c: [] for c in columns})
    width = len(LATENCY_BOUNDS_MS) + 1
    frame = pd.DataFrame(
        {
            "bucket": pd.to_datetime([s.start for s in snapshots], utc=True).floor(freq),
            "requests": [s.requests for s in snapshots],
            "errors": [s.errors for s in snapshots],
            "degraded": [s.degraded for s in snapshots],
        }
    )
    hist = np.array(
        [list(s.latency_counts) + [0] * (width - len(s.latency_counts)) for s in snapshots]
    )
    rows = []
    for bucket, idx in frame.groupby("bucket", sort=True).indices.items():
        merged = hist[idx].sum(axis=0)
        part = frame.iloc[idx]
        requests = int(part["requests"].sum())
        errors = int(part["errors"].sum())
        rows.append(
            {
                "bucket": bucket,
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "degraded": int(part["degraded"].sum()),
                **{
                    f"p{int(q * 100)}_ms": quantile_from_histogram(merged, q)
                    for q in (0.5, 0.9, 0.99)
                },
            }
        )
    return pd.DataFrame(rows, columns=columns)
