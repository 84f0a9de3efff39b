"""EMF lines for the monitor's metrics, as CloudWatch would read them."""

from __future__ import annotations

import json

import numpy as np
from test_detectors import CFG, NOW, dropped
from test_engagement_synthetic import T0, traffic

from recloop.lake import Lake
from recloop.monitoring.decisions import Action, Decision
from recloop.monitoring.detectors import recent_window
from recloop.monitoring.emf import decision_emf, report_emf
from recloop.monitoring.monitor import ModelInfo, run_checks


def _metric_names(doc: dict) -> list[str]:
    return [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]


def test_report_emf_has_ctr_per_version_and_alarm_states(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    rng = np.random.default_rng(5)
    lo, hi = recent_window(NOW, CFG)
    lake.write_events(dropped(rng, 0.1), "a")
    lake.write_events(traffic(rng, lo, 60, 3, 0.3, model_version="v2"), "b")
    report = run_checks(lake, ModelInfo("v1", trained_at=T0), NOW, CFG)
    docs = [json.loads(line) for line in report_emf(report)]
    ctr = {d["model_version"]: d for d in docs if "CTR" in d}
    assert set(ctr) == {"v1", "v2"}
    for version, doc in ctr.items():
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "recloop"
        assert ["model_version", "service"] in doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        assert _metric_names(doc) == ["CTR", "Impressions", "ClickedImpressions"]
        counts = report.engagement.counts(version, lo, hi)  # type: ignore[union-attr]
        assert doc["CTR"] == [counts.ctr] and doc["Impressions"] == [counts.impressions]
    states = {d["detector"]: d["AlarmState"] for d in docs if "AlarmState" in d}
    # Drift had no known ids: INSUFFICIENT_DATA emits nothing, so CloudWatch's
    # missing-data treatment decides.
    assert states == {"engagement_drop": [1.0], "stale_model": [0.0], "silent_stream": [0.0]}


def test_decision_emf_counts_the_action() -> None:
    doc = json.loads(decision_emf(Decision(Action.ROLLBACK, "guard_window", "v1", "v2")))
    assert doc["action"] == "rollback" and doc["Decisions"] == [1.0]
    assert doc["previous_version"] == "v2" and doc["service"] == "loop"
    assert _metric_names(doc) == ["Decisions"]
