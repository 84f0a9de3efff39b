"""Dataset builder: streaming lake window -> CSR, against reading the window whole first.

Writes N synthetic events (200k users, 100k items with a Zipf-like popularity, 70% views and
30% clicks over 28 days) to a temporary file:// lake, then builds the interaction matrix in
fresh processes (one per mode), each measuring its own wall time and peak RSS (VmHWM):
  streaming  dataset.from_lake (object by object, aggregated as it goes)
  split      dataset.split_lake_window: the three matrices `recloop train` reads in one pass
  baseline   Lake.read_events (the whole window as one Arrow table) + dataset.from_table

Usage: .venv/bin/python bench/dataset_build.py [--events 1000000] [--modes streaming,split]
The last line is one JSON object; `rss_ratio` = streaming peak RSS / baseline peak RSS, and
`cpu_ratio` compares CPU seconds (wall time on the shared machine mostly measures neighbours).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from recloop.events import EVENT_SCHEMA
from recloop.lake import Lake
from recloop.training import dataset as ds

START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=28)
SPLIT = END - timedelta(days=7)
CONFIG = ds.DatasetConfig(event_weights={"view": 1.0, "click": 3.0}, half_life_days=14.0)


def write_lake(uri: str, n_events: int, seed: int = 0) -> None:
    lake = Lake.from_uri(uri)
    rng = np.random.default_rng(seed)
    batch = 250_000
    for lo in range(0, n_events, batch):
        n = min(batch, n_events - lo)
        users = rng.integers(0, 200_000, n)
        items = np.minimum(rng.zipf(1.3, n) - 1, 99_999)
        offsets = (rng.random(n) * (END - START).total_seconds()).astype("timedelta64[s]")
        stamps = np.datetime64(START.replace(tzinfo=None), "s") + offsets
        table = pa.table(
            {
                "event_id": [f"e{lo + i}" for i in range(n)],
                "event_type": np.where(rng.random(n) < 0.3, "click", "view"),
                "timestamp": pa.array(stamps.astype("datetime64[ms]"), pa.timestamp("ms", "UTC")),
                "user_id": [f"u{u}" for u in users],
                "item_id": [f"i{i}" for i in items],
                "schema_version": pa.array(np.full(n, 2), pa.int16()),
            }
        )
        missing = [f for f in EVENT_SCHEMA if f.name not in table.column_names]
        for field in missing:
            table = table.append_column(field.name, pa.nulls(n, field.type))
        lake.write_events(table.select(EVENT_SCHEMA.names), f"bench-{lo}")


def child(mode: str, uri: str) -> None:
    imported = _peak_rss_mb()  # the interpreter with numpy, pandas, pyarrow, scipy, recloop
    lake = Lake.from_uri(uri)
    started = time.perf_counter()
    cpu_started = time.process_time()
    extra = {}
    if mode == "streaming":
        data = ds.from_lake(lake, START, END, CONFIG)
    elif mode == "split":
        # What `recloop train` reads: one pass, three matrices (before the last week, its
        # organic clicks, the whole window); figures below are the whole window's.
        split = ds.split_lake_window(lake, START, SPLIT, END, CONFIG, organic_test=True)
        data = split.full
        extra = {"train_nnz": split.train.nnz, "validation_nnz": int(split.validation.nnz)}
    else:
        columns = ["event_type", "timestamp", "user_id", "visitor_id", "item_id"]
        table, _ = lake.read_events(START, END, columns)
        data = ds.from_table(table, CONFIG, end=END)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    matrix = data.matrix
    matrix_bytes = 2 * (matrix.data.nbytes + matrix.indices.nbytes) + 2 * matrix.indptr.nbytes
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu_seconds, 2),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "nnz": int(matrix.nnz),
                "shape": list(data.shape),
                "matrix_and_ages_mb": round(matrix_bytes / 2**20, 1),
                "events": data.events_read,
                "import_rss_mb": round(imported, 1),
                **extra,
            }
        )
    )


def _peak_rss_mb() -> float:
    # VmHWM: ru_maxrss of a fork + exec child starts at the parent's RSS (the lake writer's).
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--modes",
        default="streaming,split,baseline",
        help="comma-separated: streaming (from_lake), split (split_lake_window), baseline",
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URI"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        uri = (Path(tmp) / "lake").as_uri()
        started = time.perf_counter()
        write_lake(uri, args.events)
        print(f"wrote {args.events} events in {time.perf_counter() - started:.1f}s")
        runs = {}
        for mode in args.modes.split(","):
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--child", mode, uri],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            runs[mode] = json.loads(out)
            print(mode, runs[mode])
    figures: dict[str, object] = {"events": args.events, **runs}
    if "streaming" in runs and "baseline" in runs:
        s, b = runs["streaming"], runs["baseline"]
        figures["rss_ratio"] = round(s["peak_rss_mb"] / b["peak_rss_mb"], 3)
        figures["cpu_ratio"] = round(s["cpu_seconds"] / b["cpu_seconds"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
