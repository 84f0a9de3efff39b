"""Prometheus metrics of one app (own registry, so several apps can live in one process).

With several uvicorn workers, `recloop serve` sets PROMETHEUS_MULTIPROC_DIR and /metrics
aggregates every worker's values through prometheus-client's multiprocess collector.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    """Counters, gauges and histograms the API exposes at /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recloop_http_requests", "HTTP requests", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "recloop_http_request_seconds",
            "request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.degraded = Counter(
            "recloop_degraded_responses", "answers served degraded", ["reason"], registry=r
        )
        self.backend_errors = Counter(
            "recloop_backend_errors", "failed or timed-out backend calls", ["backend"], registry=r
        )
        self.model_info = Gauge(
            "recloop_model_info",
            "1 for the model version served",
            ["version", "family"],
            registry=r,
            multiprocess_mode="liveall",
        )
        # Per backend, 1 when it answered its last health check; the minimum over the workers.
        self.backend_up = Gauge(
            "recloop_backend_up",
            "1 when the backend answered the last health check, 0 when it did not",
            ["backend"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_swaps = Counter("recloop_model_swaps", "hot swaps done", registry=r)
        self.model_rejected = Counter(
            "recloop_model_rejected", "versions that failed verification", ["version"], registry=r
        )
        self.model_download_errors = Counter(
            "recloop_model_download_errors",
            "champion downloads that failed for a transient reason (retried, not rejected)",
            registry=r,
        )
        self.events = Counter(
            "recloop_events", "events received at /events", ["outcome"], registry=r
        )
        self.impressions = Counter(
            "recloop_impressions", "impression events", ["outcome"], registry=r
        )
        self.sink_written = Counter(
            "recloop_sink_events", "events the sink delivered or dropped", ["outcome"], registry=r
        )

    def render(self) -> bytes:
        """The exposition text (every worker's values when multiprocess mode is on)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
