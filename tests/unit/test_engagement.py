"""Engagement from the lake: impressions joined with clicks by rec_id and item."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from test_engagement_synthetic import T0, _table, traffic

from recloop.lake import Lake
from recloop.monitoring.engagement import Engagement
from recloop.monitoring.errors import MonitorError

HOUR = timedelta(hours=1)


def _imp(rec: str, minute: float, items: list[str], version: str = "v1", user: str = "u1") -> dict:
    return {
        "event_id": f"e-{rec}-{minute}",
        "event_type": "impression",
        "timestamp": T0 + timedelta(minutes=minute),
        "user_id": user,
        "item_ids": items,
        "rec_id": rec,
        "model_version": version,
    }


def _click(rec: str, minute: float, item: str, user: str = "u1") -> dict:
    return {
        "event_id": f"c-{rec}-{item}-{minute}",
        "event_type": "click",
        "timestamp": T0 + timedelta(minutes=minute),
        "user_id": user,
        "item_id": item,
        "rec_id": rec,
    }


def _rows(rows: list[dict]) -> pa.Table:
    keys = {k for r in rows for k in r}
    return _table({k: [r.get(k) for r in rows] for k in keys})


def test_click_counts_only_for_the_impression_that_showed_that_item_in_time() -> None:
    table = _rows(
        [
            _imp("a", 0, ["x", "y", "z"]),
            _imp("b", 1, ["x", "y"]),
            _imp("c", 2, ["q"], version="v2"),
            _imp("d", 3, ["x"]),
            _click("a", 0.5, "y"),
            _click("a", 0.6, "y"),  # the same item twice: one click
            _click("a", 0.7, "z"),
            _click("b", 1.5, "z"),  # z was not shown in b: does not count
            _click("c", 30, "q"),  # after the 15-minute attribution window
            _click("zz", 1, "x"),  # no such impression
            _imp("a", 4, ["x", "y", "z"]),  # a redelivered impression is one impression
        ]
    )
    eng = Engagement.from_table(table, T0, T0 + HOUR, attribution=timedelta(minutes=15))
    by_rec = eng.frame.set_index("rec_id")
    assert by_rec.loc["a", "clicks"] == 2
    assert by_rec.loc["b", "clicks"] == 0
    assert by_rec.loc["c", "clicks"] == 0
    assert len(eng.frame) == 4
    assert eng.unmatched_clicks == 2  # zz and the unshown z
    v1 = eng.counts("v1")
    assert (v1.impressions, v1.clicked, v1.slots, v1.clicks) == (3, 1, 6, 2)
    assert v1.ctr == pytest.approx(1 / 3)
    assert v1.slot_ctr == pytest.approx(2 / 6)
    assert eng.counts("v2").clicked == 0


def test_ctr_per_model_version_recovers_the_true_rates() -> None:
    rng = np.random.default_rng(1)
    table = pa.concat_tables(
        [
            traffic(rng, T0, 120, 60, 0.10, model_version="v1"),
            traffic(rng, T0, 120, 60, 0.25, model_version="v2"),
        ]
    )
    eng = Engagement.from_table(table, T0, T0 + 2 * HOUR)
    ctr = eng.ctr().set_index("model_version")["ctr"]
    assert ctr["v1"] == pytest.approx(0.10, abs=0.02)
    assert ctr["v2"] == pytest.approx(0.25, abs=0.02)
    assert eng.versions()[0] in {"v1", "v2"}


def test_ctr_by_hour_and_segment() -> None:
    rng = np.random.default_rng(2)
    # CTR 0.3 in the first hour, 0.1 in the second: hourly buckets must show the step.
    table = traffic(rng, T0, 120, 50, lambda m: np.where(m < 60, 0.3, 0.1))
    eng = Engagement.from_table(table, T0, T0 + 2 * HOUR)
    hourly = eng.ctr(by=["model_version"], freq="1h")
    assert list(hourly["bucket"]) == [T0, T0 + HOUR]
    assert hourly["ctr"].iloc[0] == pytest.approx(0.3, abs=0.05)
    assert hourly["ctr"].iloc[1] == pytest.approx(0.1, abs=0.05)
    by_device = eng.ctr(by=["device"])
    assert set(by_device["device"]) == {"mobile", "desktop"}
    assert by_device["impressions"].sum() == len(eng.frame)
    cohort = eng.with_cohort(np.array([f"u{i}" for i in range(250)], dtype=object)).ctr(
        by=["cohort"]
    )
    assert set(cohort["cohort"]) == {"new", "returning"}
    with pytest.raises(MonitorError):
        eng.ctr(by=["no_such_column"])


def test_from_lake_equals_from_table_and_handles_an_empty_lake(lake_uri: str) -> None:
    rng = np.random.default_rng(3)
    table = traffic(rng, T0, 90, 20, 0.2)
    lake = Lake.from_uri(lake_uri)
    empty = Engagement.from_lake(lake, T0, T0 + HOUR)
    assert empty.frame.empty and empty.counts().impressions == 0
    lake.write_events(table, "batch-1")
    from_lake = Engagement.from_lake(lake, T0, T0 + HOUR)
    direct = Engagement.from_table(table, T0, T0 + HOUR)
    assert from_lake.counts() == direct.counts()
    assert from_lake.counts().impressions > 0
    with pytest.raises(MonitorError):
        Engagement.from_lake(lake, T0, T0)


def test_concat_of_disjoint_windows_adds_their_counts() -> None:
    rng = np.random.default_rng(4)
    table = traffic(rng, T0, 120, 30, 0.2)
    first = Engagement.from_table(table, T0, T0 + HOUR)
    second = Engagement.from_table(table, T0 + HOUR, T0 + 2 * HOUR)
    both = Engagement.concat([first, second])
    whole = Engagement.from_table(table, T0, T0 + 2 * HOUR)
    assert both.counts() == whole.counts()
    assert both.counts("v1", T0 + HOUR, T0 + 2 * HOUR) == second.counts()
