"""Service-metric snapshots: recording, the JSON-lines log, merged time series."""

from __future__ import annotations

import bisect
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from recloop.monitoring.errors import MonitorError
from recloop.monitoring.service_metrics import (
    LATENCY_BOUNDS_MS,
    ServiceMetricsLog,
    ServiceSnapshot,
    SnapshotRecorder,
    quantile_from_histogram,
    service_series,
)

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def test_recorder_counts_statuses_and_latency_quantiles_and_resets() -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(mean=np.log(0.008), sigma=0.6, size=5000)  # seconds
    rec = SnapshotRecorder("test:1", now=T)
    threads = [
        threading.Thread(target=lambda part: [rec.record(s, 200) for s in part], args=(chunk,))
        for chunk in np.array_split(latencies, 4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(50):
        rec.record(0.5, 503, degraded=True)
    snap = rec.flush(T + timedelta(minutes=1), model_version="v3")
    assert snap.requests == 5050 and snap.errors == 50 and snap.degraded == 50
    assert snap.status == {"200": 5000, "503": 50}
    everything = np.concatenate([latencies, [0.5] * 50]) * 1000
    edges = (0.0, *LATENCY_BOUNDS_MS)
    for q in (0.5, 0.9, 0.99):
        # A histogram knows a quantile to its bucket: the estimate lies in the true one's.
        i = bisect.bisect_left(LATENCY_BOUNDS_MS, np.percentile(everything, q * 100))
        assert edges[i] <= snap.quantile_ms(q) <= edges[i + 1]  # type: ignore[operator]
    empty = rec.flush(T + timedelta(minutes=2))
    assert empty.requests == 0 and empty.start == T + timedelta(minutes=1)
    assert empty.quantile_ms(0.5) is None


def test_quantile_interpolates_inside_the_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[5] = 100  # all in (7.5, 10] ms
    assert quantile_from_histogram(counts, 0.5) == pytest.approx(8.75)
    counts = [0] * len(LATENCY_BOUNDS_MS) + [10]  # all slower than the last bound
    assert quantile_from_histogram(counts, 0.5) == LATENCY_BOUNDS_MS[-1]


def _snap(minute: int, instance: str, requests: int, errors: int, fast: bool) -> ServiceSnapshot:
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[2 if fast else 14] = requests
    return ServiceSnapshot(
        T + timedelta(minutes=minute), T + timedelta(minutes=minute + 1), requests,
        {"200": requests - errors, "500": errors}, 0, tuple(counts), "v1", instance,
    )  # fmt: skip


def _roundtrip(log: ServiceMetricsLog) -> None:
    snaps = [_snap(m, i, 100, 5 if i == "b" else 0, i == "a") for m in range(3) for i in "ab"]
    log.append(*snaps[:2])
    log.append(*snaps[2:])
    read = log.read()
    assert [s.to_dict() for s in read] == [s.to_dict() for s in snaps]
    assert len(log.read(since=T + timedelta(minutes=1))) == 4
    series = service_series(read, "1min")
    assert list(series["requests"]) == [200, 200, 200]
    assert list(series["error_rate"]) == [0.025] * 3
    # Half the requests are fast (2-3 ms), half slow (200-300 ms): merged, not averaged.
    assert 2 < series["p50_ms"].iloc[0] <= 3
    assert 200 < series["p99_ms"].iloc[0] <= 300


def test_metrics_log_roundtrip_and_merge_on_file(tmp_path: Path) -> None:
    _roundtrip(ServiceMetricsLog((tmp_path / "m" / "service.jsonl").as_uri()))


def test_metrics_log_roundtrip_and_merge_on_s3(s3_bucket: tuple[object, str]) -> None:
    client, bucket = s3_bucket
    _roundtrip(ServiceMetricsLog(f"s3://{bucket}/metrics/service.jsonl", s3_client=client))


def test_snapshots_with_other_buckets_are_refused() -> None:
    data = _snap(0, "a", 1, 0, True).to_dict()
    data["latency_bounds_ms"] = [1, 10, 100]
    with pytest.raises(MonitorError):
        ServiceSnapshot.from_dict(data)
    assert service_series([]).empty
