"""Synthetic impression/click traffic whose CTR is known, shared by the monitoring tests.

Other monitoring test modules import `traffic` from here; the tests below check the generator
itself, so that a detector test failing points at the detector and not at its data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from recloop.events import EVENT_SCHEMA

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def traffic(
    rng: np.random.Generator,
    start: datetime,
    minutes: float,
    per_minute: float,
    ctr: float | Callable[[np.ndarray], np.ndarray],
    model_version: str = "v1",
    slots: int = 5,
    devices: tuple[str, ...] = ("mobile", "desktop"),
    users: int = 500,
    click_delay_s: float = 20.0,
    prefix: str = "",
) -> pa.Table:
    """Impressions at a Poisson rate; each is clicked (one random shown item) with prob `ctr`.

    `ctr` may be a function of the impressions' minute offsets (an array), for drifts.
    """
    n = int(rng.poisson(per_minute * minutes))
    offsets = np.sort(rng.uniform(0, minutes, n))
    p = ctr(offsets) if callable(ctr) else np.full(n, ctr)
    clicked = rng.random(n) < p
    ts = np.datetime64(start.replace(tzinfo=None), "ms") + (offsets * 60_000).astype(
        "timedelta64[ms]"
    )
    tag = f"{prefix}{model_version}-{start:%H%M%S}"
    rec_ids = np.array([f"r-{tag}-{i}" for i in range(n)], dtype=object)
    items = rng.integers(0, 200, size=(n, slots))
    item_lists = [[f"i{x}" for x in row] for row in items]
    actors = np.array([f"u{x}" for x in rng.integers(0, users, n)], dtype=object)
    device = np.array(devices, dtype=object)[rng.integers(0, len(devices), n)]
    pick = rng.integers(0, slots, n)
    c_idx = np.flatnonzero(clicked)
    c_ts = ts[c_idx] + (rng.uniform(1, click_delay_s, len(c_idx)) * 1000).astype("timedelta64[ms]")
    rows_imp = {
        "event_id": [f"e-{r}" for r in rec_ids],
        "event_type": ["impression"] * n,
        "timestamp": ts,
        "user_id": actors,
        "item_ids": item_lists,
        "positions": [list(range(slots))] * n,
        "rec_id": rec_ids,
        "model_version": [model_version] * n,
        "device": device,
    }
    rows_clk = {
        "event_id": [f"c-{r}" for r in rec_ids[c_idx]],
        "event_type": ["click"] * len(c_idx),
        "timestamp": c_ts,
        "user_id": actors[c_idx],
        "item_id": [item_lists[i][pick[i]] for i in c_idx],
        "rec_id": rec_ids[c_idx],
        "model_version": [model_version] * len(c_idx),
        "device": device[c_idx],
    }
    return pa.concat_tables([_table(rows_imp), _table(rows_clk)])


def _table(columns: dict[str, object]) -> pa.Table:
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    arrays = []
    for field in EVENT_SCHEMA:
        if field.name in columns:
            arrays.append(pa.array(columns[field.name], type=field.type))
        elif field.name == "schema_version":
            arrays.append(pa.array([2] * n, type=field.type))
        elif field.name == "source":
            arrays.append(pa.array(["api"] * n, type=field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def test_generator_clicks_reference_shown_items_and_hit_the_requested_rate() -> None:
    table = traffic(np.random.default_rng(0), T0, minutes=60, per_minute=100, ctr=0.3)
    rows = table.to_pylist()
    shown = {r["rec_id"]: set(r["item_ids"]) for r in rows if r["event_type"] == "impression"}
    clicks = [r for r in rows if r["event_type"] == "click"]
    assert all(c["item_id"] in shown[c["rec_id"]] for c in clicks)
    assert abs(len(clicks) / len(shown) - 0.3) < 0.03
    assert min(r["timestamp"] for r in rows) >= T0
    assert max(r["timestamp"] for r in rows) < T0 + timedelta(minutes=61)
