"""LazyHistorySink: built on first use, backs off after a failure, recovers after it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recloop.events import Event
from recloop.ingest.history import HistoryUnavailableError, LazyHistorySink
from recloop.serving.features import FeatureStore, features_from_uri

EVENT = Event(
    event_id="e1",
    event_type="click",
    timestamp=datetime.now(UTC),
    user_id="u1",
    item_id="i1",
)


def test_the_store_is_built_on_the_first_append_and_backs_off_after_a_failure(
    tmp_path: Path,
) -> None:
    now = [0.0]
    builds: list[FeatureStore] = []
    up = [False]

    def build() -> FeatureStore:
        if not up[0]:
            raise ConnectionError("cluster down")
        store = features_from_uri("sqlite:///" + str(tmp_path / "f.db"), timeout_ms=5_000)
        builds.append(store)
        return store

    sink = LazyHistorySink(build, retry_after_s=60, clock=lambda: now[0])
    assert builds == []  # nothing is built before events arrive
    with pytest.raises(HistoryUnavailableError, match="cluster down"):
        sink.append_history([EVENT])
    up[0] = True
    now[0] = 59.0
    with pytest.raises(HistoryUnavailableError, match="recently"):  # no call in the back-off
        sink.append_history([EVENT])
    assert builds == [] and sink.failures == 1
    now[0] = 61.0
    sink.append_history([EVENT])
    assert [h.item_id for h in builds[0].recent_history("u1")] == ["i1"]
    sink.close()
