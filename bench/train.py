"""`recloop train` end to end against implicit's bare ALS fit on the same matrix, same run.

1. Synthetic lake: N interactions (default 1M) by 200k users on 100k items over 28 days, users
   in taste groups with Zipf-skewed items, 40% clicks / 60% views, hour partitions (setup: not
   timed).
2. `recloop train --model als --param factors=64 --param iterations=15 --budget 1` in a fresh
   process: lake scan, matrices, holdout fit, evaluation on <= 10k sampled users (popularity
   beside), the refit on the whole window, bundle, registry, gate. Wall time and peak RSS.
3. implicit's AlternatingLeastSquares(64 factors, 15 iterations).fit alone, in a fresh process,
   on the whole-window matrix the pipeline's refit used (same weighting, same threads).

ratio = e2e wall / (bare fit wall x fits the pipeline ran): what everything around the fitting
costs (cpu_ratio: the same with CPU seconds, steadier when other jobs share the cores). Both
also move with the pipeline's own fits, which other jobs on the machine slow down by up to 2x
in one run and not in the next; overhead_ratio (and overhead_cpu_ratio) = 1 + (e2e minus the
pipeline's fit stages) / (bare fit x fits) is what the issue's ratio would be if the
pipeline's fits had run exactly as fast as the bare fit: the cost of everything else alone. The
RSS target compares peak RSS with 3 x (matrix + factors); the interpreter with recloop's imports
(e2e_import_rss_mb) is part of the peak.

Usage: .venv/bin/python bench/train.py [--events 1000000] [--users 200000] [--items 100000]
The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
DAYS = 28
GROUPS = 50
START = "2026-01-01T00:00:00"
TRAIN_ARGS = [
    "--model",
    "als",
    "--param",
    "factors=64",
    "--param",
    "iterations=15",
    "--budget",
    "1",
    "--holdout-days",
    "7",
    "--validation-days",
    "7",
]


def synthetic_lake(uri: str, events: int, users: int, items: int, seed: int = 7) -> int:
    """Write the synthetic events into a file:// lake in day-sized batches; returns objects."""
    from recloop.events import EVENT_SCHEMA, conform
    from recloop.lake import Lake

    rng = np.random.default_rng(seed)
    lake = Lake.from_uri(uri)
    per_group = items // GROUPS
    t0 = np.datetime64(START, "ms")
    written = 0
    for day in range(DAYS):
        n = events // DAYS + (1 if day < events % DAYS else 0)
        user = rng.integers(0, users, n)
        # Mostly the user's own group, sometimes anywhere: a learnable but noisy signal.
        group = np.where(rng.random(n) < 0.8, user % GROUPS, rng.integers(0, GROUPS, n))
        item = group * per_group + np.minimum(rng.zipf(1.3, n) - 1, per_group - 1)
        ms = day * 86_400_000 + rng.integers(0, 86_400_000, n)
        table = pa.table(
            {
                "event_id": pa.array([f"e{day}-{i}" for i in range(n)]),
                "event_type": np.where(rng.random(n) < 0.4, "click", "view"),
                "timestamp": pa.array(
                    t0 + ms.astype("timedelta64[ms]"), pa.timestamp("ms", tz="UTC")
                ),
                "user_id": pa.array([f"u{u}" for u in user]),
                "item_id": pa.array([f"i{j}" for j in item]),
                "source": pa.array(["bench"] * n),
                "schema_version": pa.array(np.full(n, 2, np.int16)),
            }
        )
        written += len(lake.write_events(conform(table).cast(EVENT_SCHEMA), f"bench-day{day}"))
    return written


def child_e2e(lake_uri: str, registry_uri: str) -> dict[str, Any]:
    """`recloop train` in this (fresh) process; its JSON summary, wall time and peak RSS."""
    import contextlib
    import io

    from recloop.cli import app

    baseline = _rss_mb()
    out = io.StringIO()
    cpu = _cpu()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        app(
            ["train", *TRAIN_ARGS, "--lake", lake_uri, "--registry", registry_uri, "--json"],
            standalone_mode=False,
        )
    wall = time.perf_counter() - start
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    return {
        "wall": wall,
        "cpu": _cpu() - cpu,
        "peak_rss_mb": _rss_mb(),
        "import_rss_mb": baseline,
        **summary,
    }


def child_bare(registry_uri: str, run_id: str) -> dict[str, Any]:
    """implicit's ALS fit alone on the refit's matrix (rebuilt from the run's bundle)."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    from recloop.registry import registry_from_uri
    from recloop.training.bundle import ModelBundle
    from recloop.training.models._common import single_threaded_blas, thread_count, weigh

    registry = registry_from_uri(registry_uri)
    version = next(v for v in registry.list() if v.run_id == run_id)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = ModelBundle.load(registry.download(version.version, Path(tmp) / "b"), mmap=False)
    assert bundle.history is not None
    params = bundle.model.params
    matrix = weigh(sp.csr_matrix(bundle.history), params["weighting"])
    del bundle
    baseline = _rss_mb()
    with single_threaded_blas():
        model = AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            iterations=int(params["iterations"]),
            random_state=int(params["random_state"]),
            num_threads=thread_count(int(params["num_threads"])),
        )
        cpu = _cpu()
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        wall = time.perf_counter() - start
        cpu = _cpu() - cpu
    factors = (model.user_factors.nbytes + model.item_factors.nbytes) / 2**20
    matrix_mb = (matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes) / 2**20
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": _rss_mb(),
        "import_rss_mb": baseline,
        "matrix_mb": matrix_mb,
        "factors_mb": factors,
        "shape": list(matrix.shape),
        "nnz": int(matrix.nnz),
    }


def _cpu() -> float:
    # User + system CPU seconds of this process: steadier than wall time on a busy machine.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM, since Linux's ru_maxrss of a child started by
    fork + exec starts at the parent's RSS at the fork (the parent holds the lake it wrote:
    ~290 MB at 10M events, which the import figure used to report)."""
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_e2e(*rest) if kind == "e2e" else child_bare(*rest)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="recloop-bench-train-") as tmp:
        lake_uri = (Path(tmp) / "lake").as_uri()
        registry_uri = (Path(tmp) / "registry").as_uri()
        start = time.perf_counter()
        objects = synthetic_lake(lake_uri, args.events, args.users, args.items)
        setup = time.perf_counter() - start
        print(f"setup: {args.events:,} events in {objects} lake objects ({setup:.1f}s)")
        e2e = _child("e2e", lake_uri, registry_uri)
        print(
            f"recloop train: {e2e['wall']:.1f}s, {e2e['fits']} fits, peak RSS "
            f"{e2e['peak_rss_mb']:.0f} MB; {e2e['status']}: {e2e['reason']}"
        )
        bare = _child("bare", registry_uri, e2e["run_id"])
        print(
            f"bare implicit ALS fit: {bare['wall']:.1f}s on {bare['shape']} "
            f"({bare['nnz']:,} nnz), peak RSS {bare['peak_rss_mb']:.0f} MB"
        )
        from recloop.registry import registry_from_uri
        from recloop.training.runs import RunTracker

        record = RunTracker.for_registry(registry_from_uri(registry_uri)).get(e2e["run_id"])
    budget = 3 * (bare["matrix_mb"] + bare["factors_mb"])
    fit_stages = [k for k in record.timings if k.startswith("fit.")]
    besides_wall = e2e["wall"] - sum(record.timings[k] for k in fit_stages)
    besides_cpu = e2e["cpu"] - sum(record.cpu_seconds[k] for k in fit_stages)
    figures = {
        "bench": "train",
        "events": args.events,
        "users": args.users,
        "items": args.items,
        "lake_objects": objects,
        "e2e_seconds": round(e2e["wall"], 2),
        "fits": e2e["fits"],
        "bare_fit_seconds": round(bare["wall"], 2),
        "timings": {k: round(v, 2) for k, v in record.timings.items()},
        "cpu_seconds": {k: round(v, 2) for k, v in record.cpu_seconds.items()},
        "peak_rss_mb_after": record.peak_rss_mb,
        "holdout_recall@10": round(e2e["holdout"]["recall@10"], 4),
        "popularity_recall@10": round(e2e["holdout"]["popularity_recall@10"], 4),
        "e2e_peak_rss_mb": round(e2e["peak_rss_mb"]),
        "e2e_import_rss_mb": round(e2e["import_rss_mb"]),
        "bare_peak_rss_mb": round(bare["peak_rss_mb"]),
        "matrix_mb": round(bare["matrix_mb"], 1),
        "factors_mb": round(bare["factors_mb"], 1),
        "rss_budget_mb": round(budget),
        "rss_over_budget": round(e2e["peak_rss_mb"] / budget, 2),
        "e2e_cpu_seconds": round(e2e["cpu"], 2),
        "bare_fit_cpu_seconds": round(bare["cpu"], 2),
        "cpu_ratio": round(e2e["cpu"] / (bare["cpu"] * e2e["fits"]), 3),
        "besides_fits_seconds": round(besides_wall, 2),
        "besides_fits_cpu_seconds": round(besides_cpu, 2),
        "overhead_cpu_ratio": round(1 + besides_cpu / (bare["cpu"] * e2e["fits"]), 3),
        "overhead_ratio": round(1 + besides_wall / (bare["wall"] * e2e["fits"]), 3),
        "ratio": round(e2e["wall"] / (bare["wall"] * e2e["fits"]), 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
