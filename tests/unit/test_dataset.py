"""Dataset builder: events (lake or table) -> weighted, decayed, filtered CSR with id maps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recloop.events import Event, events_to_table
from recloop.lake import Lake
from recloop.training.dataset import (
    DatasetConfig,
    DatasetError,
    from_lake,
    from_table,
    load_id_maps,
    split_lake_window,
    stratified_split,
    temporal_split,
    temporal_split_lake,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _event(n: int, user: str, item: str, kind: str = "click", hours: float = 0.0) -> Event:
    return Event(
        event_id=f"e{n}",
        event_type=kind,
        timestamp=T0 + timedelta(hours=hours),
        user_id=user,
        item_id=item,
    )


def _frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "timestamp": [T0 + timedelta(days=r[3]) for r in rows],
        }
    )


def _cell(data, user: str, item: str) -> float:  # type: ignore[no-untyped-def]
    return float(data.matrix[data.user_index()[user], data.item_index()[item]])


def test_event_types_are_weighted_and_repeats_add_up() -> None:
    frame = _frame([("u1", "a", "click", 0), ("u1", "a", "click", 1), ("u1", "b", "view", 1)])
    config = DatasetConfig(event_weights={"click": 3.0, "view": 1.0})
    data = from_table(frame, config)
    assert data.matrix.dtype == np.float32
    assert _cell(data, "u1", "a") == 6.0
    assert _cell(data, "u1", "b") == 1.0


def test_event_types_without_weight_are_ignored() -> None:
    frame = _frame([("u1", "a", "click", 0), ("u2", "b", "impression", 0)])
    data = from_table(frame, DatasetConfig(event_weights={"click": 1.0}))
    assert data.user_ids.tolist() == ["u1"]
    assert data.item_ids.tolist() == ["a"]


def test_half_life_halves_weight_per_half_life_before_the_window_end() -> None:
    frame = _frame([("u1", "old", "click", 0), ("u1", "new", "click", 7)])
    end = T0 + timedelta(days=14)
    data = from_table(frame, DatasetConfig({"click": 1.0}, half_life_days=7), end=end)
    assert _cell(data, "u1", "old") == pytest.approx(0.25)
    assert _cell(data, "u1", "new") == pytest.approx(0.5)
    ages = data.ages.toarray()[0]
    assert sorted(ages.tolist()) == pytest.approx([7.0, 14.0])


def test_minimum_counts_filter_until_stable() -> None:
    # u3 has a single item; dropping it leaves item c with one user, so c goes too.
    rows = [("u1", "a", "click", 0), ("u1", "b", "click", 0), ("u2", "a", "click", 0)]
    rows += [("u2", "b", "click", 0), ("u3", "c", "click", 0), ("u1", "c", "click", 0)]
    config = DatasetConfig({"click": 1.0}, min_user_interactions=2, min_item_interactions=2)
    data = from_table(_frame(rows), config)
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert data.item_ids.tolist() == ["a", "b"]
    assert data.matrix.nnz == 4


def test_ids_are_sorted_so_row_order_does_not_depend_on_input_order() -> None:
    rows = [("u2", "b", "click", 0), ("u1", "a", "click", 1), ("u3", "a", "view", 2)]
    one = from_table(_frame(rows))
    two = from_table(_frame(rows[::-1]))
    assert one.user_ids.tolist() == ["u1", "u2", "u3"]
    assert (one.matrix != two.matrix).nnz == 0


def test_histories_by_user_id_with_unknown_users_empty() -> None:
    data = from_table(_frame([("u1", "a", "click", 0), ("u2", "b", "view", 1)]))
    rows = data.histories(["u2", "nobody", "u1"])
    assert rows.shape == (3, 2)
    assert (rows.toarray() > 0).tolist() == [[False, True], [False, False], [True, False]]


def test_table_without_the_needed_columns_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="lacks column"):
        from_table(pd.DataFrame({"user_id": ["u"], "timestamp": [0]}))


def test_bad_config_is_refused() -> None:
    with pytest.raises(DatasetError):
        DatasetConfig(event_weights={"click": -1.0})
    with pytest.raises(DatasetError):
        DatasetConfig(half_life_days=0)


def test_lake_window_streams_dedupes_and_records_the_snapshot(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    first = [_event(1, "u1", "a"), _event(2, "u1", "b", "view"), _event(3, "u2", "a", hours=5)]
    lake.write_events(events_to_table(first), "batch-1")
    # A redelivery of e1 in another batch, and an anonymous visitor's click.
    again = [
        _event(1, "u1", "a"),
        Event(event_id="e4", event_type="click", timestamp=T0, visitor_id="v9", item_id="b"),
    ]
    lake.write_events(events_to_table(again), "batch-2")
    lake.write_events(events_to_table([_event(5, "u3", "z", hours=48)]), "batch-3")

    config = DatasetConfig({"click": 2.0, "view": 1.0})
    data = from_lake(lake, T0, T0 + timedelta(days=1), config)
    assert data.user_ids.tolist() == ["u1", "u2", "v9"]
    assert data.item_ids.tolist() == ["a", "b"]
    assert _cell(data, "u1", "a") == 2.0  # counted once despite the redelivery
    assert _cell(data, "u1", "b") == 1.0
    assert data.events_read == 4
    assert data.snapshot is not None
    assert len(data.snapshot.objects) == 3  # hour 0 (two batches) and hour 5; not day 2
    assert data.snapshot.rows == 5


def test_open_window_ends_with_the_newest_partition_and_config_roundtrips(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    events = [_event(1, "u1", "a", hours=0.5), _event(2, "u1", "b", hours=26.25)]
    impression = Event(
        event_id="e3", event_type="impression", timestamp=T0, user_id="u2", item_ids=["a", "b"]
    )
    lake.write_events(events_to_table([*events, impression]), "b1")
    config = DatasetConfig({"click": 1.0, "impression": 5.0}, half_life_days=1.0)
    data = from_lake(lake, None, None, config)
    assert data.end == T0 + timedelta(hours=27)
    assert data.user_ids.tolist() == ["u1"]  # an impression names no single item
    assert sorted(data.ages.data.tolist()) == pytest.approx([0.03125, 1.10417], abs=1e-4)
    assert DatasetConfig.from_dict(config.to_dict()) == config


def test_id_maps_roundtrip_without_pickle(tmp_path: Path) -> None:
    data = from_table(_frame([("u1", "a", "click", 0), ("ü2", "b", "view", 1)]))
    data.save(tmp_path / "ds")
    maps = load_id_maps(tmp_path / "ds")
    assert maps.user_ids.tolist() == data.user_ids.tolist()
    assert maps.item_ids.tolist() == ["a", "b"]
    assert maps.meta["shape"] == [2, 2]
    (tmp_path / "ds" / "item_ids.npy").write_bytes(b"garbage")
    with pytest.raises(DatasetError):
        load_id_maps(tmp_path / "ds")


def test_temporal_split_tests_on_next_window_clicks_of_known_users_and_items() -> None:
    rows = [("u1", "a", "click", 0), ("u2", "b", "click", 1), ("u1", "b", "click", 10)]
    rows += [("u2", "a", "view", 11), ("u9", "a", "click", 11), ("u2", "new", "click", 12)]
    train, test = temporal_split(_frame(rows), T0 + timedelta(days=5))
    assert train.user_ids.tolist() == ["u1", "u2"]
    assert test.shape == train.shape
    dense = test.toarray()
    assert dense.tolist() == [[0.0, 1.0], [0.0, 0.0]]  # views, unknown users/items dropped


def test_temporal_split_on_the_lake(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    events = [_event(1, "u1", "a"), _event(2, "u2", "b", hours=1), _event(3, "u1", "b", hours=30)]
    lake.write_events(events_to_table(events), "b1")
    train, test = temporal_split_lake(lake, T0, T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert train.nnz == 2
    assert test.toarray().tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_one_scan_gives_train_validation_and_the_full_window(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    events = [_event(1, "u1", "a"), _event(2, "u2", "b", "view", hours=1)]
    events += [_event(3, "u1", "b", hours=30), _event(4, "u3", "c", hours=31)]
    lake.write_events(events_to_table(events), "b1")
    config = DatasetConfig({"click": 1.0, "view": 1.0}, half_life_days=1.0)
    split = split_lake_window(lake, T0, T0 + timedelta(days=1), T0 + timedelta(days=2), config)
    assert split.train.user_ids.tolist() == ["u1", "u2"]
    assert split.validation.toarray().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert split.full.user_ids.tolist() == ["u1", "u2", "u3"]
    assert split.full.nnz == 4
    # Each matrix decays relative to its own end: a at age 1 day in train, 2 days in full.
    assert _cell(split.train, "u1", "a") == pytest.approx(0.5)
    assert _cell(split.full, "u1", "a") == pytest.approx(0.25)
    assert split.full.snapshot is split.train.snapshot
    assert len(split.full.snapshot.objects) == 4  # four hour partitions, each read once
    with pytest.raises(DatasetError, match="inside the window"):
        split_lake_window(lake, T0, T0 + timedelta(days=3), T0 + timedelta(days=2))


def test_an_organic_validation_leaves_out_clicks_on_recommendations(lake_uri: str) -> None:
    lake = Lake.from_uri(lake_uri)
    events = [_event(1, "u1", "a"), _event(2, "u2", "b")]
    events += [_event(3, "u1", "b", hours=30), _event(4, "u2", "a", hours=31)]
    events[3] = events[3].model_copy(update={"rec_id": "r1"})  # a click on a recommended list
    lake.write_events(events_to_table(events), "b1")
    bounds = (T0, T0 + timedelta(days=1), T0 + timedelta(days=2))
    every = split_lake_window(lake, *bounds)
    organic = split_lake_window(lake, *bounds, organic_test=True)
    assert every.validation.toarray().tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert organic.validation.toarray().tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert organic.full.nnz == every.full.nnz == 4  # training data keeps every event


def test_stratified_split_is_per_user_seeded_and_disjoint() -> None:
    rng = np.random.default_rng(0)
    import scipy.sparse as sp

    matrix = sp.csr_matrix((rng.random((30, 50)) < 0.3).astype(np.float32))
    train, test = stratified_split(matrix, 0.25, seed=42)
    again, _ = stratified_split(matrix, 0.25, seed=42)
    other, _ = stratified_split(matrix, 0.25, seed=7)
    assert (train + test != matrix).nnz == 0
    assert train.multiply(test).nnz == 0
    counts = np.diff(matrix.indptr)
    assert np.array_equal(np.diff(train.indptr), np.round(counts * 0.75).astype(int))
    assert (again != train).nnz == 0
    assert (other != train).nnz > 0


def _pandas_rounds(rows: pd.DataFrame, round_ends: list[int]) -> pd.DataFrame:
    """The earlier builder's arithmetic: at each round end, regroup the previous sums followed
    by the rows since, with pandas (a compensated sum in row order, a fresh compensation)."""
    merged = None
    lo = 0
    for hi in round_ends:
        frame = rows.iloc[lo:hi]
        if merged is not None:
            frame = pd.concat([merged, frame], ignore_index=True)
        merged = frame.groupby("k", sort=False).agg(w=("w", "sum"), t=("t", "max")).reset_index()
        lo = hi
    assert merged is not None
    return merged.sort_values("k", ignore_index=True)


def test_pair_sums_are_pandas_sums_bit_for_bit_across_folds_and_rounds() -> None:
    from recloop.training.pairsums import PairSums

    rng = np.random.default_rng(5)
    n = 60_000
    rows = pd.DataFrame(
        {
            "k": rng.integers(0, 900, n) * 1_000_003,
            # decayed-looking weights: their float64 sums depend on the order and rounding
            "w": np.exp2(-rng.random(n) * 6) * rng.choice([1.0, 3.0], n),
            "t": rng.integers(0, 10**12, n),
        }
    )
    folds = np.linspace(0, n, 25).astype(int)  # 24 folds; rounds end after 8, 16 and 24 of them
    ends = [int(folds[8]), int(folds[16]), n]
    expected = _pandas_rounds(rows, ends)

    def build(end_rounds: bool) -> PairSums:
        sums = PairSums()
        for lo, hi in itertools.pairwise(folds):
            part = rows.iloc[lo:hi]
            sums.add(part["k"].to_numpy(), part["w"].to_numpy(), part["t"].to_numpy())
            if end_rounds and hi in ends:
                sums.end_round()
        return sums

    got = build(end_rounds=True)
    assert np.array_equal(got.keys, expected["k"].to_numpy())
    assert np.array_equal(got.sums.view(np.uint64), expected["w"].to_numpy().view(np.uint64))
    assert np.array_equal(got.latest, expected["t"].to_numpy())
    # The rounds matter: carrying the compensation through them gives other last bits.
    assert not np.array_equal(build(end_rounds=False).sums, expected["w"].to_numpy())


def test_streamed_matrices_with_decay_equal_a_pandas_build_of_the_whole_window_bit_for_bit(
    lake_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recloop.training import dataset
    from training_fixtures import write_synthetic_lake

    monkeypatch.setattr(dataset, "_FOLD_ROWS", 50)  # many folds over ~2,500 events
    lake = write_synthetic_lake(lake_uri, seed=3)
    start, at, end = T0.replace(month=1), datetime(2026, 1, 15, tzinfo=UTC), None
    config = DatasetConfig({"click": 3.0, "view": 0.7}, half_life_days=2.5)
    split = split_lake_window(lake, start, at, end, config)

    def reference(hi: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table, _ = lake.read_events(start, hi, ["event_type", "timestamp", "user_id", "item_id"])
        frame = table.to_pandas()
        ts = frame["timestamp"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
        hi_ms = int(hi.timestamp() * 1000)
        weight = frame["event_type"].map({"click": 3.0, "view": 0.7}).to_numpy()
        weight = weight * np.exp2(-((hi_ms - ts) / 86_400_000.0) / 2.5)
        rows = pd.DataFrame({"u": frame["user_id"], "i": frame["item_id"], "w": weight, "t": ts})
        sums = rows.groupby(["u", "i"], sort=True).agg(w=("w", "sum"), t=("t", "max"))
        users = sums.index.get_level_values("u").to_numpy(str)
        items = sums.index.get_level_values("i").to_numpy(str)
        ages = ((hi_ms - sums["t"].to_numpy()) / 86_400_000.0).astype(np.float32)
        return np.char.add(np.char.add(users, "|"), items), sums["w"].to_numpy(np.float32), ages

    for data, hi in ((split.train, at), (split.full, split.full.end)):
        coo, ages = data.matrix.tocoo(), data.ages.tocoo()
        cells = np.char.add(np.char.add(data.user_ids[coo.row], "|"), data.item_ids[coo.col])
        keys, weights, age_days = reference(hi)
        assert np.array_equal(cells, keys)  # row-major, ids sorted: the same cell order
        assert np.array_equal(coo.data.view(np.uint32), weights.view(np.uint32))
        assert np.array_equal(ages.data.view(np.uint32), age_days.view(np.uint32))


def test_the_window_read_gives_arrow_its_default_pool_back(lake_uri: str) -> None:
    import pyarrow as pa

    from training_fixtures import write_synthetic_lake

    lake = write_synthetic_lake(lake_uri, seed=4, days=3)
    before = pa.default_memory_pool().backend_name
    split_lake_window(lake, None, datetime(2026, 1, 3, tzinfo=UTC))
    from_lake(lake, None, None)
    assert pa.default_memory_pool().backend_name == before
