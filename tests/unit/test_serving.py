"""Unit behaviour of serving's parts: ranking rules, the circuit breaker, the IVF index, sinks."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import boto3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from recloop.events import Event
from recloop.serving.candidates.base import FirstSeen, Origin, merge
from recloop.serving.candidates.ivf import build_ivf, neighbour_lists
from recloop.serving.errors import BackendError, SinkFullError
from recloop.serving.features.base import ItemFeatures
from recloop.serving.ranking import RankingRules, Scored, rank
from recloop.serving.resilience import BreakerState, CircuitBreaker, Guard
from recloop.serving.routers.recommendations import query_pairs
from recloop.serving.sinks import Impression, KinesisEventSink, QueuedSink

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def meta(item: str, cat: str, available: bool = True, age_days: float = 400) -> ItemFeatures:
    return ItemFeatures(item, item.upper(), (cat,), available, NOW - timedelta(days=age_days))


# ---- ranking ---------------------------------------------------------------------------------


def test_rank_excludes_seen_and_unavailable() -> None:
    scored = [Scored(i, 10 - n, Origin.VECTOR) for n, i in enumerate("abcd")]
    metadata = {"a": meta("a", "x"), "b": meta("b", "x", available=False), "c": meta("c", "y")}
    ids = [r.item_id for r in rank(scored, metadata, 10, NOW, seen=frozenset({"a"}))]
    assert ids == ["c", "d"]  # d has no metadata: kept, as available


def test_freshness_boost_lifts_a_new_item_and_says_so() -> None:
    scored = [Scored("old", 1.0, Origin.POPULAR), Scored("new", 0.95, Origin.POPULAR)]
    scored += [Scored("low", 0.0, Origin.POPULAR)]
    metadata = {
        "old": meta("old", "x"),
        "new": meta("new", "y", age_days=0.5),
        "low": meta("low", "z"),
    }
    ranked = rank(scored, metadata, 3, NOW)
    assert [r.item_id for r in ranked][:2] == ["new", "old"]
    assert ranked[0].reason == "new this week"
    no_boost = rank(scored, metadata, 3, NOW, RankingRules(freshness_boost=0.0))
    assert no_boost[0].item_id == "old"


def test_diversity_cap_defers_a_dominant_category() -> None:
    scored = [Scored(f"x{i}", 10.0 - i, Origin.VECTOR) for i in range(6)]
    scored += [Scored("y0", 1.0, Origin.VECTOR), Scored("z0", 0.5, Origin.VECTOR)]
    metadata = {s.item_id: meta(s.item_id, s.item_id[0]) for s in scored}
    ids = [r.item_id for r in rank(scored, metadata, 5, NOW)]  # cap: 40% of 5 = 2
    assert ids == ["x0", "x1", "y0", "z0", "x2"]  # x2 fills in only because nothing else is left


def test_reason_names_the_history_item() -> None:
    scored = [Scored("b", 1.0, Origin.NEIGHBOUR, anchor_id="a")]
    ranked = rank(scored, {"a": meta("a", "x"), "b": meta("b", "x")}, 1, NOW)
    assert ranked[0].reason == "similar to A"


def test_category_filter_keeps_only_that_category() -> None:
    scored = [Scored("a", 2.0, Origin.VECTOR), Scored("b", 1.0, Origin.VECTOR)]
    ranked = rank(scored, {"a": meta("a", "x"), "b": meta("b", "y")}, 5, NOW, category="y")
    assert [r.item_id for r in ranked] == ["b"]


# ---- candidates helpers ----------------------------------------------------------------------


def test_merge_keeps_first_origin_and_drops_padding() -> None:
    merged = merge(
        [
            (np.array([3, -1, 5]), Origin.NEIGHBOUR, np.array([9, 9, 9])),
            (np.array([5, 7]), Origin.POPULAR, None),
        ],
        limit=10,
    )
    assert merged.items.tolist() == [3, 5, 7]
    assert merged.origin.tolist() == [Origin.NEIGHBOUR, Origin.NEIGHBOUR, Origin.POPULAR]
    assert merged.anchor.tolist() == [9, 9, -1]
    without = merge([(np.array([3, 5, 7]), Origin.VECTOR, None)], limit=10, exclude=frozenset({5}))
    assert without.items.tolist() == [3, 7]


def _reference_merge(
    parts: list[Any], limit: int, exclude: frozenset[int]
) -> list[tuple[int, ...]]:
    """The rule, spelled out: first occurrence in priority order, padding and exclusions out."""
    seen: set[int] = set()
    out = []
    for items, origin, anchors in parts:
        for n, item in enumerate(items.tolist()):
            if item >= 0 and item not in exclude and item not in seen:
                seen.add(item)
                out.append((item, int(origin), -1 if anchors is None else int(anchors[n])))
    return out[:limit]


def test_merge_with_and_without_the_scratch_array_follows_the_same_rule() -> None:
    rng = np.random.default_rng(7)
    scratch = FirstSeen(60)
    for _ in range(200):  # one scratch across calls: every call must leave it clean
        n_parts = int(rng.integers(0, 4))
        parts = [
            (
                rng.integers(-1, 60, int(rng.integers(0, 40))),
                Origin(int(rng.integers(1, 4))),
                None,
            )
            for _ in range(n_parts)
        ]
        parts = [
            (i, o, rng.integers(0, 60, len(i)) if o is Origin.NEIGHBOUR else a) for i, o, a in parts
        ]
        exclude = frozenset(rng.integers(0, 60, int(rng.integers(0, 10))).tolist())
        limit = int(rng.integers(1, 50))
        expected = _reference_merge(parts, limit, exclude)
        for merged in (merge(parts, limit, exclude), merge(parts, limit, exclude, scratch)):
            got = list(
                zip(
                    merged.items.tolist(),
                    merged.origin.tolist(),
                    merged.anchor.tolist(),
                    strict=True,
                )
            )
            assert got == expected
    assert merge([(np.arange(10), Origin.VECTOR, None)], limit=4).items.tolist() == [0, 1, 2, 3]


def test_ivf_neighbours_are_exact_on_a_small_catalogue() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ids, sims = neighbour_lists(unit, build_ivf(unit), 5)
    exact = unit @ unit.T
    np.fill_diagonal(exact, -np.inf)
    assert ids.tolist() == np.argsort(-exact, axis=1)[:, :5].tolist()
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_ivf_search_finds_the_best_item_among_lists() -> None:
    rng = np.random.default_rng(2)
    # Clustered data: 30 well-separated centres, as factor models produce.
    centres = rng.standard_normal((30, 16)) * 5
    vectors = (centres[rng.integers(0, 30, 25_000)] + rng.standard_normal((25_000, 16))).astype(
        np.float32
    )
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_ivf(unit)
    assert index.nlist > 1
    query = vectors[123]
    found, _ = index.search(vectors, query, 10, nprobe=8)
    exact = np.argsort(-(vectors @ query))[:10]
    assert len(set(found.tolist()) & set(exact.tolist())) >= 8


# ---- resilience --------------------------------------------------------------------------------


def test_breaker_opens_after_failures_and_probes_once_after_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_after=5.0, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    now[0] = 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe only
    breaker.failure()  # the probe failed: open again
    assert breaker.state is BreakerState.OPEN
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED


def test_guard_times_out_a_blocking_call() -> None:
    guard = Guard("slow", timeout_s=0.05, blocking=True)
    release = threading.Event()

    async def run() -> None:
        with pytest.raises(BackendError, match="timed out"):
            await guard.call(release.wait, 2.0)

    start = time.perf_counter()
    asyncio.run(run())
    release.set()
    assert time.perf_counter() - start < 1.0


def test_guard_turns_driver_errors_into_backend_errors() -> None:
    def boom() -> None:
        raise ConnectionResetError("peer reset")

    with pytest.raises(BackendError, match="ConnectionResetError"):
        asyncio.run(Guard("db", 0.1, blocking=False).call(boom))


# ---- sinks ------------------------------------------------------------------------------------


def view(n: int) -> Event:
    return Event(
        event_id=f"e{n}",
        event_type="view",  # type: ignore[arg-type]
        timestamp=NOW,
        visitor_id=f"v{n % 7}",
        item_id=f"i{n}",
    )


class RecordingSink(QueuedSink):
    def __init__(self, fail_first: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batches: list[list[str]] = []
        self.fail_first = fail_first

    def _deliver(self, batch: list[Event]) -> list[Event]:
        if self.fail_first:
            self.fail_first -= 1
            raise OSError("transient")
        self.batches.append([e.event_id for e in batch])
        return []


def test_queued_sink_batches_retries_and_drains_on_close() -> None:
    sink = RecordingSink(fail_first=1, batch_size=4, linger_s=0.01, max_queue=100)
    sink.start()
    sink.submit([view(n) for n in range(10)])
    sink.close(timeout=5.0)
    delivered = [e for batch in sink.batches for e in batch]
    assert sorted(delivered) == sorted(f"e{n}" for n in range(10))
    assert max(len(b) for b in sink.batches) <= 4


def test_queued_sink_keeps_batching_while_events_keep_arriving() -> None:
    # A steady stream (one event every ms) with a 100 ms linger: about one delivery per
    # linger, not a delivery for whatever arrived while the previous one was being written.
    class SlowSink(RecordingSink):
        def _deliver(self, batch: list[Event]) -> list[Event]:
            time.sleep(0.005)  # a Parquet write takes a few ms
            return super()._deliver(batch)

    sink = SlowSink(batch_size=10_000, linger_s=0.1, max_queue=10_000)
    sink.start()
    started = time.monotonic()
    for n in range(400):
        sink.submit([view(n)])
        time.sleep(0.001)
    elapsed = time.monotonic() - started  # ~0.4 s; longer on a loaded machine
    sink.close(timeout=5.0)
    assert sum(len(b) for b in sink.batches) == 400
    # One delivery per linger, plus the one at close (draining until empty: one per ~5 ms).
    assert len(sink.batches) <= elapsed / 0.1 + 2, [len(b) for b in sink.batches]


def test_queued_sink_refuses_when_full_instead_of_growing() -> None:
    sink = RecordingSink(max_queue=3)  # not started: nothing drains
    sink.submit([view(1), view(2)])
    with pytest.raises(SinkFullError):
        sink.submit([view(3), view(4)])
    assert sink.depth == 2


def test_kinesis_sink_puts_records_partitioned_by_actor() -> None:
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="events", ShardCount=1)
        sink = KinesisEventSink(client, "events", linger_s=0.01)
        sink.start()
        sink.submit([view(n) for n in range(12)])
        assert sink.flush(30.0)
        sink.close()
        records = stream_records(client, "events")
    assert len(records) == 12 and sink.delivered == 12
    assert {r["PartitionKey"] for r in records} == {f"v{n}" for n in range(7)}
    assert Event.model_validate_json(records[0]["Data"]).event_id == "e0"


def stream_records(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every record of a one-shard stream (moto), oldest first."""
    shard = client.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = client.get_records(ShardIterator=iterator)["Records"]
    return records


def test_kinesis_sink_puts_impressions_as_impression_events() -> None:
    shown = Impression(f"{5:032x}", "v5", False, ["i5", "i6"], "v7", NOW)
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="events", ShardCount=1)
        sink = KinesisEventSink(client, "events", linger_s=0.01)
        sink.start()
        sink.submit_impression(shown)
        assert sink.flush(30.0)
        sink.close()
        records = stream_records(client, "events")
    assert [r["PartitionKey"] for r in records] == ["v5"]
    assert Event.model_validate_json(records[0]["Data"]) == shown.event()


def test_kinesis_sink_retries_only_the_failed_records() -> None:
    calls: list[int] = []

    class Throttled:
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            calls.append(len(Records))
            if len(calls) == 1:  # the first call throttles every other record
                out = [
                    {"ErrorCode": "ProvisionedThroughputExceededException"} if i % 2 else {}
                    for i in range(len(Records))
                ]
                return {"FailedRecordCount": len(Records) // 2, "Records": out}
            return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}

    sink = KinesisEventSink(Throttled(), "events", linger_s=0.01)
    sink.start()
    sink.submit([view(n) for n in range(6)])
    assert sink.flush(30.0)
    sink.close()
    assert calls == [6, 3] and sink.delivered == 6 and sink.dropped == 0


# ---- item metadata table ------------------------------------------------------------------


def test_item_table_rows_expire_unless_the_store_confirms_its_items_are_unchanged() -> None:
    from recloop.serving.features.cache import ItemTable

    now = [100.0]
    table = ItemTable(4, ttl_s=5.0, check_every_s=1.0, clock=lambda: now[0])
    rows = np.array([1, 2, 1])
    assert table.stale(rows).tolist() == [1, 2]
    table.fill(np.array([1, 2]), ["a", "b"], {"a": meta("a", "x", available=False)})
    assert table.stale(rows).tolist() == []
    got = table.gather(rows)
    assert got.known.tolist() == [True, False, True]  # b: read, and the store has no row
    assert got.available.tolist() == [False, True, False] and got.titles[0] == "A"
    assert table.gather(rows, unusable=np.array([1])).known.tolist() == [False, False, False]
    table.confirm(7)  # the first version seen: rows read before it are not trusted
    assert table.stale(rows).tolist() == [1, 2]
    table.fill(np.array([1, 2]), ["a", "b"], {})
    now[0] += 4.0
    assert table.version_due()  # checked 4 s ago, every 1 s
    table.confirm(7)  # unchanged: valid ttl_s from now
    now[0] += 4.0
    assert table.stale(rows).tolist() == []
    now[0] += 2.0  # no confirmation for 6 s: the TTL applies
    assert table.stale(rows).tolist() == [1, 2]
    table.fill(np.array([1, 2]), ["a", "b"], {})
    table.confirm(8)  # an item changed somewhere: every row is read again
    assert table.stale(rows).tolist() == [1, 2]


# ---- query string ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab_=&%+2F;k x", max_size=30))
def test_query_pairs_read_a_query_string_as_parse_qsl_does(raw: str) -> None:
    assert query_pairs(raw) == dict(parse_qsl(raw, keep_blank_values=True))


def test_query_pairs_keep_blank_values_and_the_last_repeat() -> None:
    assert query_pairs("user_id=u1&k=&k=5&exclude_seen") == {
        "user_id": "u1",
        "k": "5",
        "exclude_seen": "",
    }
