"""The decision log and the JSON-lines log under it, on file:// and on S3 (moto)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.monitoring.decisions import Action, Decision, DecisionLog, decision_log_uri
from recloop.monitoring.errors import MonitorError
from recloop.monitoring.jsonl import JsonLinesLog

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _decisions() -> list[Decision]:
    return [
        Decision(Action.ALARM, "engagement_drop", "v1", evidence={"p_value": 1e-5}, at=T),
        Decision(Action.RETRAIN, "engagement_drop", "v1", at=T + timedelta(minutes=1)),
        Decision(
            Action.PROMOTE,
            "gate",
            "v2",
            "v1",
            metrics={"recall@10": 0.31},
            at=T + timedelta(minutes=5),
        ),
        Decision(Action.ROLLBACK, "guard_window", "v1", "v2", at=T + timedelta(minutes=30)),
    ]


def _exercise(log: DecisionLog) -> None:
    assert log.list() == []
    decisions = _decisions()
    for decision in reversed(decisions):  # written out of order, listed in time order
        log.append(decision)
    listed = log.list()
    assert listed == decisions
    assert [d.action for d in log.list(actions=["promote", Action.ROLLBACK])] == [
        Action.PROMOTE,
        Action.ROLLBACK,
    ]
    assert [
        d.action for d in log.list(since=T + timedelta(minutes=1), until=T + timedelta(minutes=30))
    ] == [
        Action.RETRAIN,
        Action.PROMOTE,
    ]
    assert [d.action for d in log.list(limit=1)] == [Action.ROLLBACK]
    recorded = log.record("hold", "schedule", detail="nothing fired", at=T + timedelta(hours=1))
    assert log.list()[-1] == recorded
    assert listed[2].metrics == {"recall@10": 0.31} and listed[2].previous_version == "v1"


def test_decision_log_on_file(tmp_path: Path) -> None:
    uri = (tmp_path / "registry" / "decisions.jsonl").as_uri()
    _exercise(DecisionLog(uri))
    lines = (tmp_path / "registry" / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(line.startswith('{"decision_id"') for line in lines)


def test_decision_log_on_s3(s3_bucket: tuple[object, str]) -> None:
    client, bucket = s3_bucket
    _exercise(DecisionLog(f"s3://{bucket}/registry/decisions.jsonl", s3_client=client))
    body = client.get_object(Bucket=bucket, Key="registry/decisions.jsonl")["Body"].read()  # type: ignore[attr-defined]
    assert body.count(b"\n") == 5


def test_concurrent_s3_appends_lose_no_line(s3_bucket: tuple[object, str]) -> None:
    client, bucket = s3_bucket
    log = JsonLinesLog(f"s3://{bucket}/log.jsonl", s3_client=client)
    log.append({"n": -1})

    def writer(k: int) -> None:
        for i in range(5):
            log.append({"n": k * 10 + i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = [-1, *sorted(k * 10 + i for k in range(3) for i in range(5))]
    assert sorted(r["n"] for r in log.read()) == expected


def test_concurrent_file_appends_lose_no_line(tmp_path: Path) -> None:
    log = JsonLinesLog((tmp_path / "log.jsonl").as_uri())

    def writer(k: int) -> None:
        for i in range(50):
            log.append({"n": k * 100 + i, "pad": "x" * 200})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["n"] for r in log.read()}) == 200


def test_partial_and_malformed_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}\n{"a": 3, "half')
    assert JsonLinesLog(str(path)).read() == [{"a": 1}, {"a": 2}]


def test_bad_uris_and_records_are_clear_errors() -> None:
    with pytest.raises(ConfigError):
        JsonLinesLog("ftp://host/log.jsonl")
    with pytest.raises(ConfigError):
        JsonLinesLog("s3://bucket-only")
    with pytest.raises(MonitorError):
        JsonLinesLog("/tmp/never-written.jsonl").append({"x": object()})


def test_log_location_follows_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", "s3://models/reg")
    assert decision_log_uri(Settings()) == "s3://models/reg/decisions.jsonl"
    monkeypatch.setenv("RECLOOP_MONITOR_DECISION_LOG_URI", "file:///var/log/d.jsonl")
    assert decision_log_uri(Settings()) == "file:///var/log/d.jsonl"
    monkeypatch.delenv("RECLOOP_MONITOR_DECISION_LOG_URI")
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", "sagemaker://recloop-models")
    with pytest.raises(ConfigError):
        decision_log_uri(Settings())
    monkeypatch.setenv("RECLOOP_REGISTRY_ARTIFACTS_URI", "s3://art/x/")
    assert decision_log_uri(Settings()) == "s3://art/x/decisions.jsonl"
