"""Engagement join: impressions x clicks by (rec_id, item) -> CTR per model version per hour.

Generates N impressions (5 items each, CTR ~15%, three model versions over 24 hours) as an
events table, then computes CTR per version and hour two ways in the same process:
  vectorised  Engagement.from_table(...).ctr(by=["model_version"], freq="1h") (Arrow + pandas)
  baseline    a plain-Python join: a dict of (rec_id, item) -> impression, one loop over clicks
Both answers are compared (they must agree exactly), then CPU time is measured, best of 3.

Usage: .venv/bin/python bench/monitor_engagement.py [--impressions 200000]
The last line is one JSON object; `speedup` = baseline CPU seconds / vectorised CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from recloop.events import EVENT_SCHEMA
from recloop.monitoring.engagement import Engagement

START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(hours=24)
ATTRIBUTION = timedelta(minutes=15)


def events(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = np.datetime64(START.replace(tzinfo=None), "ms") + np.sort(
        rng.integers(0, 24 * 3600 * 1000, n)
    ).astype("timedelta64[ms]")
    items = rng.integers(0, 5000, (n, 5)).astype(str)
    rec = np.char.add("r", np.arange(n).astype(str))
    version = np.array(["v1", "v2", "v3"])[rng.integers(0, 3, n)]
    clicked = np.flatnonzero(rng.random(n) < 0.15)
    pick = items[clicked, rng.integers(0, 5, len(clicked))]
    c_ts = ts[clicked] + (rng.uniform(1, 60, len(clicked)) * 1000).astype("timedelta64[ms]")

    def table(cols: dict[str, object], rows: int) -> pa.Table:
        arrays = [
            pa.array(cols[f.name], type=f.type) if f.name in cols else pa.nulls(rows, f.type)
            for f in EVENT_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)

    imps = table(
        {
            "event_id": rec, "event_type": np.full(n, "impression"), "timestamp": ts,
            "user_id": rec, "item_ids": items.tolist(), "rec_id": rec,
            "model_version": version, "schema_version": np.full(n, 2),
        },
        n,
    )  # fmt: skip
    m = len(clicked)
    clicks = table(
        {
            "event_id": np.char.add("c", rec[clicked]), "event_type": np.full(m, "click"),
            "timestamp": c_ts, "user_id": rec[clicked], "item_id": pick,
            "rec_id": rec[clicked], "schema_version": np.full(m, 2),
        },
        m,
    )  # fmt: skip
    return pa.concat_tables([imps, clicks])


def vectorised(table: pa.Table) -> dict[tuple[str, str], tuple[int, int]]:
    out = Engagement.from_table(table, START, END, ATTRIBUTION).ctr(freq="1h")
    return {
        (str(v), b.isoformat()): (int(n), int(c))
        for b, v, n, c in zip(out["bucket"], out["model_version"], out["impressions"],
                              out["clicked"], strict=True)
    }  # fmt: skip


def baseline(table: pa.Table) -> dict[tuple[str, str], tuple[int, int]]:
    rows = table.to_pylist()
    shown: dict[tuple[str, str], str] = {}
    imps: dict[str, dict[str, object]] = {}
    for row in rows:
        if row["event_type"] == "impression" and row["rec_id"] not in imps:
            imps[row["rec_id"]] = row
            for item in row["item_ids"]:
                shown[(row["rec_id"], item)] = row["rec_id"]
    hits: set[tuple[str, str]] = set()
    for row in rows:
        if row["event_type"] != "click":
            continue
        rec = shown.get((row["rec_id"], row["item_id"]))
        if rec is None:
            continue
        delay = row["timestamp"] - imps[rec]["timestamp"]  # type: ignore[operator]
        if timedelta(seconds=-60) <= delay <= ATTRIBUTION:
            hits.add((rec, row["item_id"]))
    clicked_recs = {rec for rec, _ in hits}
    agg: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for rec, row in imps.items():
        hour = row["timestamp"].replace(minute=0, second=0, microsecond=0)  # type: ignore[attr-defined]
        cell = agg[(str(row["model_version"]), hour.isoformat())]
        cell[0] += 1
        cell[1] += rec in clicked_recs
    return {k: (v[0], v[1]) for k, v in agg.items()}


def cpu(fn: object, table: pa.Table, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        fn(table)  # type: ignore[operator]
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    table = events(args.impressions)
    assert vectorised(table) == baseline(table), "the two joins disagree"
    fast = cpu(vectorised, table, args.rounds)
    slow = cpu(baseline, table, args.rounds)
    print(f"vectorised {fast:.3f} s, python baseline {slow:.3f} s (CPU, best of {args.rounds})")
    print(
        json.dumps(
            {
                "impressions": args.impressions,
                "events": table.num_rows,
                "vectorised_cpu_s": round(fast, 3),
                "baseline_cpu_s": round(slow, 3),
                "impressions_per_s": round(args.impressions / fast),
                "speedup": round(slow / fast, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
