"""Detectors on synthetic traffic whose answer is known."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from test_engagement_synthetic import T0, traffic

from recloop.config import Settings
from recloop.lake import Lake
from recloop.monitoring import detectors as d
from recloop.monitoring import sequential as sq
from recloop.monitoring.alarms import Alarm, AlarmState
from recloop.monitoring.engagement import Counts, Engagement
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.monitor import ModelInfo, last_event_time, run_checks

CFG = d.MonitorConfig(
    current=timedelta(minutes=60),
    baseline=timedelta(minutes=360),
    attribution=timedelta(minutes=15),
    min_impressions=300,
    min_relative_drop=0.20,
    block=timedelta(minutes=15),
    seasonality=timedelta(days=1),
    harmonics=0,
)
# T0 is 08:00. The world runs 22 h; the monitored span is on the 6-hour grid, 18:00 to 05:45
# (one attribution window before NOW); the reference is the model's traffic before 18:00.
NOW = T0 + timedelta(hours=22)
DROP_AT = T0 + timedelta(hours=20)


def dropped(rng: np.random.Generator, after: float, before: float = 0.2) -> pa.Table:
    """22 h of v1 traffic from T0, 10 impressions a minute, CTR `before` until DROP_AT."""
    return traffic(rng, T0, 22 * 60, 10, lambda m: np.where(m < 20 * 60, before, after))


@functools.lru_cache(maxsize=16)
def _world(seed: int, base_ctr: float, cur_ctr: float, per_minute: float = 10) -> Engagement:
    rng = np.random.default_rng(seed)
    minutes = 22 * 60
    table = traffic(
        rng, T0, minutes, per_minute, lambda m: np.where(m < 20 * 60, base_ctr, cur_ctr)
    )
    return Engagement.from_table(table, T0, NOW, CFG.attribution)


_REFS: dict[tuple[int, tuple[datetime, datetime], str], d.DropReference] = {}


def _ref(eng: Engagement, at: datetime, config: d.MonitorConfig) -> d.DropReference:
    """One reference per span, as run_checks caches it (so that a check every minute is cheap)."""
    window = d.drop_windows(at, config)[1]
    key = (id(eng), window, repr(config))
    if key not in _REFS:
        _REFS[key] = d.reference_from_engagement(eng, "v1", window, config)
    return _REFS[key]


def test_windows_are_on_the_grid_whenever_the_check_runs() -> None:
    (lo, hi), (ref_lo, ref_hi) = d.drop_windows(NOW, CFG)
    assert (lo, hi) == (T0 + timedelta(hours=10), T0 + timedelta(hours=21, minutes=45))
    assert (ref_lo, ref_hi) == (lo - timedelta(days=1), lo)
    # Any check in the same grid cell recomputes from the same start and reference.
    later = d.drop_windows(NOW + timedelta(minutes=7, seconds=13), CFG)
    assert later[1] == (ref_lo, ref_hi) and later[0][0] == lo
    promoted = T0 + timedelta(hours=8)
    (p_lo, _), (p_ref_lo, p_ref_hi) = d.drop_windows(NOW, CFG, baseline_start=promoted)
    assert p_ref_lo == promoted and p_lo == p_ref_hi == promoted + CFG.baseline


def test_a_real_drop_fires_with_its_evidence() -> None:
    alarm = d.engagement_drop(_world(7, 0.20, 0.14), "v1", NOW, CFG)
    assert alarm.state is AlarmState.ALARM, alarm.summary
    ev = alarm.evidence
    crossed = datetime.fromisoformat(ev["crossed_at"])
    assert DROP_AT < crossed <= NOW - CFG.attribution
    assert ev["relative_drop"] == pytest.approx(0.30, abs=0.12)
    assert ev["expected_ctr"] == pytest.approx(0.20, abs=0.02)
    assert ev["reference"]["impressions"] > 3000 and ev["reference"]["design_effect"] >= 1
    assert ev["threshold"] == pytest.approx(ev["reference"]["threshold"])
    # The threshold is Siegmund's at this traffic: below Lorden's bound, never above.
    lorden = math.log(30 * 24 * 4)
    assert 0 < ev["threshold"] <= lorden
    uncalibrated = d.engagement_drop(
        _world(7, 0.20, 0.14), "v1", NOW, replace(CFG, calibrate=False)
    )
    assert uncalibrated.evidence["threshold"] == pytest.approx(lorden, abs=1e-3)


def test_equal_ctr_does_not_fire_over_seeds_and_checks() -> None:
    states = []
    for seed in range(6):
        eng = _world(seed, 0.2, 0.2)
        for hours in range(12):
            at = NOW - timedelta(hours=hours)
            states.append(d.engagement_drop(eng, "v1", at, CFG, ref=_ref(eng, at, CFG)).state)
    assert states.count(AlarmState.ALARM) == 0 and states.count(AlarmState.OK) > 60


def test_checking_every_minute_sees_the_same_crossings_as_every_15_minutes() -> None:
    eng = _world(7, 0.20, 0.14)

    def crossings(step: timedelta) -> tuple[set[str], datetime | None]:
        seen: set[str] = set()
        first = None
        at = DROP_AT
        while at <= NOW:
            alarm = d.engagement_drop(eng, "v1", at, CFG, ref=_ref(eng, at, CFG))
            if alarm.firing:
                seen.add(alarm.evidence["crossed_at"])
                first = first or at
            at += step
        return seen, first

    minute, first_minute = crossings(timedelta(minutes=1))
    quarter, first_quarter = crossings(timedelta(minutes=15))
    assert minute and minute == quarter
    assert first_minute is not None and first_quarter is not None
    assert first_minute <= first_quarter < first_minute + timedelta(minutes=15)


def test_too_little_data_gives_no_verdict_even_on_a_real_drop() -> None:
    alarm = d.engagement_drop(_world(3, 0.3, 0.05, per_minute=0.3), "v1", NOW, CFG)
    assert alarm.state is AlarmState.INSUFFICIENT_DATA
    assert alarm.evidence["current"]["impressions"] < 300
    other = d.engagement_drop(_world(3, 0.2, 0.1), "v9", NOW, CFG)  # a version with no traffic
    assert other.state is AlarmState.INSUFFICIENT_DATA


def test_ctr_by_hour_of_day_is_expected_and_not_alarmed() -> None:
    # Three days at constant CTR that swings +-50% over the day (trough at 02:00): a reference
    # without the hour-of-day shape reads the night as a drop, the fitted shape does not.
    rng = np.random.default_rng(5)
    start = T0.replace(hour=0)

    def ctr(m: np.ndarray) -> np.ndarray:
        hour = (m / 60) % 24
        return 0.2 * (1 + 0.5 * np.cos(2 * np.pi * (hour - 14) / 24))

    table = traffic(rng, start, 3 * 24 * 60, 4, ctr)
    end = start + timedelta(days=3)
    eng = Engagement.from_table(table, start, end, CFG.attribution)
    config = replace(CFG, seasonality=timedelta(days=2), harmonics=2)

    fired, at = set(), start + timedelta(days=2)
    while at <= end:
        alarm = d.engagement_drop(eng, "v1", at, config, ref=_ref(eng, at, config))
        if alarm.firing:
            fired.add(alarm.evidence["crossed_at"])
        at += timedelta(minutes=15)
    assert fired == set()
    ref = alarm.evidence["reference"]
    assert not ref["shape"]["flat"]
    assert ref["shape"]["by_hour"][2] < 0.6 < 1.4 < ref["shape"]["by_hour"][14]
    # Without the shape the swing is not alarmed either, but it lands in the variance: the
    # detector goes blind rather than noisy (the batch-means inflation sees the misfit).
    blind = d.engagement_drop(eng, "v1", end, replace(config, harmonics=0))
    assert blind.evidence["reference"]["design_effect"] > 3 * ref["design_effect"]


def test_user_clustering_inflates_the_variance_and_independence_does_not() -> None:
    rng = np.random.default_rng(0)
    users = 3000
    # Clustered: each user 6 impressions in the block, each user with their own CTR.
    p_user = rng.beta(1, 9, users)
    clustered = sq.clusters_to_blocks(
        np.zeros(users, dtype=np.int64), np.full(users, 6.0), rng.binomial(6, p_user), 900.0
    )
    independent = sq.clusters_to_blocks(
        np.zeros(users * 6, dtype=np.int64), np.ones(users * 6), rng.binomial(1, 0.1, users * 6),
        900.0,
    )  # fmt: skip
    flat = sq.DiurnalShape()
    assert sq.reference(clustered, flat, 900.0).design_effect > 1.3
    assert sq.reference(independent, flat, 900.0).design_effect < 1.1


def test_the_cusum_resets_after_each_crossing() -> None:
    # 12 blocks: 4 at the expected CTR, 4 far below, 4 at the expected CTR again.
    n = np.full(12, 1000.0)
    clicked = np.array([100.0] * 4 + [60.0] * 4 + [100.0] * 4)
    stats = sq.BlockStats(np.arange(12) * 900.0, n, clicked, clicked, clicked, n)
    ref = sq.Reference(0.1, 1.0, 10_000, 1000)
    path = sq.cusum(stats, ref, sq.DiurnalShape(), 0.2, 5.0, 900.0)
    assert list(path.crossings) == [4, 5, 6, 7]  # every low block crosses again from 0
    assert list(path.starts) == [4, 5, 6, 7]
    assert path.path[8] == 0 and path.statistic == 0


def test_the_threshold_follows_the_false_alarm_budget() -> None:
    one = sq.threshold_for(1.0, 900.0)
    assert one == pytest.approx(math.log(30 * 24 * 4))
    assert sq.threshold_for(4.0, 900.0) == pytest.approx(one - math.log(4))
    siegmund = sq.threshold_for(1.0, 900.0, information=2.0)
    assert 0 < siegmund < one
    assert sq.threshold_for(1.0, 900.0, information=0.5) < siegmund  # less info per block
    with pytest.raises(MonitorError):
        sq.threshold_for(0.0, 900.0)


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
        d.MonitorConfig(min_relative_drop=0)
    with pytest.raises(MonitorError):
        d.MonitorConfig(false_alarms_per_30_days=0)
    with pytest.raises(MonitorError):
        d.MonitorConfig(block=timedelta(hours=2))
    monkeypatch.setenv("RECLOOP_MONITOR_SILENCE_MINUTES", "7")
    monkeypatch.setenv("RECLOOP_MONITOR_FALSE_ALARMS_PER_30_DAYS", "2")
    monkeypatch.setenv("RECLOOP_MONITOR_BLOCK_MINUTES", "5")
    config = d.MonitorConfig.from_settings(Settings())
    assert config.silence == timedelta(minutes=7) and config.false_alarms_per_30_days == 2
    assert config.block == timedelta(minutes=5)


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
    lake.write_events(dropped(rng, 0.12), "b1")
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


def test_run_checks_reads_a_spans_reference_once(
    lake_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recloop.monitoring.monitor as monitor_module

    lake = Lake.from_uri(lake_uri)
    lake.write_events(dropped(np.random.default_rng(4), 0.2), "b1")
    reads: list[tuple[datetime, datetime]] = []
    real = Engagement.from_lake

    def counting(lake: Lake, start: datetime, end: datetime, attribution: timedelta) -> Engagement:
        reads.append((start, end))
        return real(lake, start, end, attribution)

    monkeypatch.setattr(monitor_module.Engagement, "from_lake", staticmethod(counting))
    config = replace(CFG, seasonality=timedelta(hours=20))  # a key of its own in the cache
    first = run_checks(lake, ModelInfo("v1"), NOW, config).get(d.ENGAGEMENT_DROP)
    hourly = len(reads)
    assert hourly > 5  # the span, then the reference hour by hour
    reads.clear()
    again = run_checks(lake, ModelInfo("v1"), NOW + timedelta(minutes=1), config)
    assert len(reads) == 1  # only the span: the reference came from the cache
    alarm = again.get(d.ENGAGEMENT_DROP)
    assert first is not None and alarm is not None
    assert alarm.evidence["reference"] == first.evidence["reference"]
