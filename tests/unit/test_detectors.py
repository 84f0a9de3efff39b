"""Detectors on synthetic traffic whose answer is known."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from test_engagement_synthetic import T0, traffic

from recloop.config import Settings
from recloop.lake import Lake
from recloop.monitoring import detectors as d
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.engagement import Counts, Engagement
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.monitor import ModelInfo, last_event_time, run_checks

CFG = d.MonitorConfig(
    current=timedelta(minutes=60),
    baseline=timedelta(minutes=360),
    attribution=timedelta(minutes=15),
    min_impressions=300,
    alpha=0.01,
    min_relative_drop=0.10,
)
# Baseline [T0, T0+6h), current [T0+6h, T0+7h): checked at T0+7h15m.
NOW = T0 + timedelta(hours=7, minutes=15)


@functools.lru_cache(maxsize=64)  # the two methods are tested on the same worlds
def _world(seed: int, base_ctr: float, cur_ctr: float, per_minute: float = 10) -> Engagement:
    rng = np.random.default_rng(seed)
    table = traffic(rng, T0, 435, per_minute, lambda m: np.where(m < 360, base_ctr, cur_ctr))
    return Engagement.from_table(table, T0, NOW - CFG.attribution, CFG.attribution)


@pytest.mark.parametrize("method", ["ztest", "cusum"])
def test_a_real_drop_fires_with_its_evidence(method: str) -> None:
    config = d.MonitorConfig(**{**CFG.__dict__, "drop_method": method})
    # CUSUM is tuned to the minimum drop (10%), so it needs a little more traffic to be sure.
    alarm = d.engagement_drop(_world(7, 0.20, 0.13, per_minute=15), "v1", NOW, config)
    assert alarm.state is AlarmState.ALARM, alarm.summary
    ev = alarm.evidence
    assert ev["p_value"] < 0.01 and ev["z"] < -2.3
    assert ev["relative_drop"] == pytest.approx(0.35, abs=0.1)
    assert ev["current_window"] == [
        (T0 + timedelta(hours=6)).isoformat(),
        (T0 + timedelta(hours=7)).isoformat(),
    ]
    assert ev["baseline"]["impressions"] > 3000 and ev["current"]["impressions"] > 800
    if method == "cusum":
        assert ev["cusum"]["statistic"] >= ev["cusum"]["threshold"]
        assert ev["cusum"]["crossed_at"] is not None


@pytest.mark.parametrize("method", ["ztest", "cusum"])
def test_noise_at_equal_ctr_rarely_fires_over_seeds(method: str) -> None:
    config = d.MonitorConfig(**{**CFG.__dict__, "drop_method": method})
    states = [d.engagement_drop(_world(s, 0.2, 0.2), "v1", NOW, config).state for s in range(20)]
    # alpha = 0.01 per check: two or more false alarms in 20 checks has probability < 2%.
    assert states.count(AlarmState.ALARM) <= 1
    assert states.count(AlarmState.OK) >= 19


def test_a_real_drop_is_found_in_most_seeds() -> None:
    states = [d.engagement_drop(_world(s, 0.2, 0.13), "v1", NOW, CFG).state for s in range(10)]
    assert states.count(AlarmState.ALARM) >= 9


def test_too_little_data_gives_no_verdict_even_on_a_real_drop() -> None:
    alarm = d.engagement_drop(_world(3, 0.3, 0.05, per_minute=2), "v1", NOW, CFG)
    assert alarm.state is AlarmState.INSUFFICIENT_DATA
    assert alarm.evidence["current"]["impressions"] < 300
    other = d.engagement_drop(_world(3, 0.2, 0.1), "v9", NOW, CFG)  # a version with no traffic
    assert other.state is AlarmState.INSUFFICIENT_DATA


def test_a_small_significant_drop_below_the_minimum_effect_does_not_fire() -> None:
    config = d.MonitorConfig(**{**CFG.__dict__, "min_relative_drop": 0.5})
    alarm = d.engagement_drop(_world(7, 0.20, 0.13, per_minute=40), "v1", NOW, config)
    assert alarm.evidence["p_value"] < 0.01
    assert alarm.state is AlarmState.OK


def test_baseline_start_uses_the_models_first_hours() -> None:
    eng = _world(5, 0.2, 0.12)
    alarm = d.engagement_drop(eng, "v1", NOW, CFG, baseline_start=T0 + timedelta(hours=1))
    assert alarm.evidence["baseline_window"][0] == (T0 + timedelta(hours=1)).isoformat()
    assert alarm.evidence["baseline_window"][1] == (T0 + timedelta(hours=6)).isoformat()
    assert alarm.state is AlarmState.ALARM


def test_ztest_matches_a_hand_computed_value() -> None:
    test = d.two_proportion_ztest(Counts(1000, 100), Counts(1000, 150))
    # pooled p = 0.125, se = sqrt(.125*.875*2/1000) = 0.014790; z = -0.05/0.014790
    assert test.z == pytest.approx(-3.3806, abs=1e-3)
    assert test.p_value == pytest.approx(0.000362, rel=0.01)
    assert d.two_proportion_ztest(Counts(10, 0), Counts(10, 0)).p_value == 0.5
    with pytest.raises(MonitorError):
        d.two_proportion_ztest(Counts(), Counts(10, 1))


def test_config_rejects_nonsense_and_reads_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MonitorError):
        d.MonitorConfig(alpha=1.5)
    with pytest.raises(MonitorError):
        d.MonitorConfig(drop_method="cusum", min_relative_drop=0)
    monkeypatch.setenv("RECLOOP_MONITOR_SILENCE_MINUTES", "7")
    monkeypatch.setenv("RECLOOP_MONITOR_DROP_METHOD", "cusum")
    config = d.MonitorConfig.from_settings(Settings())
    assert config.silence == timedelta(minutes=7) and config.drop_method == "cusum"


def test_stale_model_fires_past_the_maximum_age_only() -> None:
    config = d.MonitorConfig(max_model_age=timedelta(hours=24))
    young = d.stale_model("v1", T0, T0 + timedelta(hours=23, minutes=59), config)
    old = d.stale_model("v1", T0, T0 + timedelta(hours=24, minutes=1), config)
    assert young.state is AlarmState.OK and old.state is AlarmState.ALARM
    assert old.evidence["age_hours"] == pytest.approx(24.0167, abs=1e-3)
    assert d.stale_model("v1", None, T0, config).state is AlarmState.INSUFFICIENT_DATA


def test_silent_stream_fires_after_n_minutes_and_not_before(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    config = d.MonitorConfig(silence=timedelta(minutes=15))
    empty = run_checks(lake, None, T0, config).get(d.SILENT_STREAM)
    assert empty is not None and empty.state is AlarmState.ALARM
    assert empty.evidence["last_event_at"] is None
    table = traffic(np.random.default_rng(0), T0, 50, 5, 0.2)
    lake.write_events(table, "b1")
    last = max(table.column("timestamp").to_pylist())
    assert last_event_time(lake, T0 + timedelta(hours=2), timedelta(hours=3)) == last
    before = d.silent_stream(
        last_event_time(lake, last + timedelta(minutes=14), timedelta(hours=2)),
        last + timedelta(minutes=14, seconds=59),
        config,
    )
    after = d.silent_stream(
        last_event_time(lake, last + timedelta(minutes=15), timedelta(hours=2)),
        last + timedelta(minutes=15),
        config,
    )
    assert before.state is AlarmState.OK
    assert after.state is AlarmState.ALARM
    assert after.evidence["quiet_minutes"] == pytest.approx(15.0)


def _interactions(n: int, unknown_item_share: float, unknown_user_share: float) -> pa.Table:
    k_items, k_users = int(n * unknown_item_share), int(n * unknown_user_share)
    items = [f"new{i}" for i in range(k_items)] + [f"i{i % 50}" for i in range(n - k_items)]
    users = [f"stranger{i}" for i in range(k_users)] + [f"u{i % 40}" for i in range(n - k_users)]
    imp = {"event_type": "impression", "item_id": None, "user_id": "u1", "visitor_id": None}
    rows = [
        {"event_type": "view", "item_id": i, "user_id": u, "visitor_id": None}
        for i, u in zip(items, users, strict=True)
    ] + [imp] * n
    return pa.Table.from_pylist(rows)


KNOWN_ITEMS = np.array([f"i{i}" for i in range(50)], dtype=object)
KNOWN_USERS = np.array([f"u{i}" for i in range(40)], dtype=object)


def test_drift_fires_on_unknown_items_or_users_with_evidence() -> None:
    config = d.MonitorConfig(
        drift_max_unknown_items=0.2, drift_max_unknown_users=0.5, drift_min_events=200
    )
    calm = d.traffic_drift(_interactions(400, 0.05, 0.1), KNOWN_ITEMS, KNOWN_USERS, T0, config)
    items = d.traffic_drift(_interactions(400, 0.3, 0.1), KNOWN_ITEMS, KNOWN_USERS, T0, config)
    users = d.traffic_drift(_interactions(400, 0.0, 0.6), KNOWN_ITEMS, KNOWN_USERS, T0, config)
    assert calm.state is AlarmState.OK
    assert calm.evidence["unknown_item_share"] == pytest.approx(0.05)  # impressions excluded
    assert items.state is AlarmState.ALARM and "unknown items" in items.summary
    assert items.evidence["unknown_item_share"] == pytest.approx(0.3)
    assert len(items.evidence["top_unknown_items"]) == 5
    assert users.state is AlarmState.ALARM and "unknown users" in users.summary
    assert users.evidence["unknown_users"] == 240
    few = d.traffic_drift(_interactions(100, 0.9, 0.9), KNOWN_ITEMS, KNOWN_USERS, T0, config)
    assert few.state is AlarmState.INSUFFICIENT_DATA


def test_run_checks_on_a_lake_reports_every_detector_and_the_retrain_trigger(
    lake_uri: str,
) -> None:
    rng = np.random.default_rng(11)
    lake = Lake.from_uri(lake_uri)
    lake.write_events(traffic(rng, T0, 435, 10, lambda m: np.where(m < 360, 0.2, 0.12)), "b1")
    model = ModelInfo(
        "v1",
        trained_at=T0 - timedelta(hours=2),
        known_items=[f"i{i}" for i in range(200)],
        known_users=np.array([f"u{i}" for i in range(500)], dtype=object),
    )
    config = d.MonitorConfig(**{**CFG.__dict__, "drift_min_events": 50})
    report = run_checks(lake, model, NOW, config)
    states = {a.detector: a.state for a in report.alarms}
    assert states == {
        d.ENGAGEMENT_DROP: AlarmState.ALARM,
        d.STALE_MODEL: AlarmState.OK,
        d.SILENT_STREAM: AlarmState.OK,
        d.TRAFFIC_DRIFT: AlarmState.OK,
    }
    assert [a.detector for a in report.triggers()] == [d.ENGAGEMENT_DROP]
    inferred = run_checks(lake, None, NOW, config)
    assert inferred.model_version == "v1"
    assert inferred.get(d.ENGAGEMENT_DROP).state is AlarmState.ALARM  # type: ignore[union-attr]
    payload = report.to_dict()
    assert payload["firing"] == [d.ENGAGEMENT_DROP]
    again = Alarm.from_dict(payload["alarms"][0])
    assert again == report.alarms[0]


def test_cusum_accumulates_a_small_drop_over_the_models_whole_life_since_its_baseline() -> None:
    # Baseline: the model's first two hours at 20%; from then on a 15% drop (17%).
    rng = np.random.default_rng(21)
    table = traffic(rng, T0, 435, 10, lambda m: np.where(m < 120, 0.20, 0.17))
    eng = Engagement.from_table(table, T0, NOW - CFG.attribution, CFG.attribution)
    config = d.MonitorConfig(
        **{**CFG.__dict__, "drop_method": "cusum", "baseline": timedelta(hours=2)}
    )
    alarm = d.engagement_drop(eng, "v1", NOW, config, baseline_start=T0)
    assert alarm.state is AlarmState.ALARM, alarm.summary
    crossed = alarm.evidence["cusum"]["crossed_at"]
    assert T0 + timedelta(hours=2) < datetime.fromisoformat(crossed) <= NOW
    assert len(alarm.evidence["cusum"]["path"]) == (5 * 60) // 5  # 5-minute steps since 2 h
