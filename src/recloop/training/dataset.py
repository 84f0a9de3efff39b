"""Interaction data: lake events (or any table of events) -> a users x items CSR matrix.

Events are weighted by type (a click counts more than a view), decayed by age relative to the
window end (a half-life), aggregated per (user, item), filtered by minimum counts and encoded
with id maps that are saved beside the model (.npy string arrays + dataset.json, no pickle).

The lake is read object by object with column projection and aggregated as it streams, so
memory is bounded by the number of distinct (user, item) pairs, not the number of events.
Duplicated event ids are dropped within an hour partition: a redelivered event keeps its
timestamp, so it always lands in the same partition as its first copy.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recloop.errors import RecloopError
from recloop.lake import Lake, Snapshot
from recloop.lake.lake import as_utc
from recloop.training.pairsums import PairSums

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 3.0,
    "like": 4.0,
    "share": 4.0,
    "purchase": 5.0,
}
_DAY_MS = 86_400_000.0
# The earlier builder regrouped its pending rows once they passed this many (and the size of
# its aggregate); the sums keep its rounds (see _Accumulator).
_MERGE_ROWS = 2_000_000
# Pending rows are folded into the sorted sums once they pass this many (and an eighth of the
# pairs): the buffer's memory against the cost of copying the sorted arrays at each fold.
_FOLD_ROWS = 500_000
_LAKE_COLUMNS = [
    "event_id",
    "event_type",
    "timestamp",
    "user_id",
    "visitor_id",
    "item_id",
    "rec_id",
]


class DatasetError(RecloopError):
    """Interaction data could not be built, split or loaded."""


@dataclass(frozen=True)
class DatasetConfig:
    """How events become interaction weights.

    event_weights: weight per event type; types absent (or weighted 0) are ignored.
    half_life_days: an event's weight halves every this many days before the window end
        (None: no decay).
    min_user_interactions / min_item_interactions: drop users / items with fewer distinct
        partners, repeated until stable (a k-core), so cold rows do not dilute the fit.
    """

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = None
    min_user_interactions: int = 1
    min_item_interactions: int = 1

    def __post_init__(self) -> None:
        if any(w < 0 or not math.isfinite(w) for w in self.event_weights.values()):
            raise DatasetError(f"event weights must be finite and >= 0: {self.event_weights}")
        if not any(w > 0 for w in self.event_weights.values()):
            raise DatasetError("at least one event type needs a positive weight")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise DatasetError(f"half_life_days must be > 0, got {self.half_life_days}")
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise DatasetError("minimum interaction counts must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_weights": dict(self.event_weights),
            "half_life_days": self.half_life_days,
            "min_user_interactions": self.min_user_interactions,
            "min_item_interactions": self.min_item_interactions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetConfig:
        return cls(**dict(data))


@dataclass
class InteractionData:
    """A users x items matrix with its id maps and provenance.

    matrix: float32 CSR of aggregated (weighted, decayed) interaction weights.
    ages: float32 CSR with the same sparsity: age in days of the latest event per (user, item),
        measured back from `end` (always > 0, since the window end is exclusive).
    user_ids / item_ids: the string id of each row / column.
    end: the exclusive window end that ages and decay are relative to.
    """

    matrix: sp.csr_matrix
    ages: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    end: datetime
    start: datetime | None = None
    config: DatasetConfig = field(default_factory=DatasetConfig)
    snapshot: Snapshot | None = None
    events_read: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user_ids), len(self.item_ids))

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def user_index(self) -> dict[str, int]:
        """user id -> row."""
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """item id -> column."""
        return {str(v): i for i, v in enumerate(self.item_ids)}

    def histories(self, user_ids: Iterable[str]) -> sp.csr_matrix:
        """Rows for the given user ids (unknown users get an empty row)."""
        wanted = pd.Index(self.user_ids.astype(str)).get_indexer([str(u) for u in user_ids])
        known = (wanted >= 0).astype(np.float32)
        rows = self.matrix[np.maximum(wanted, 0)]
        # Scaling unknown users' rows by 0 empties them without copying the whole matrix.
        out = sp.csr_matrix(sp.diags(known) @ rows, dtype=np.float32)
        out.eliminate_zeros()
        return out

    def save(self, folder: Path) -> Path:
        """Write user_ids.npy, item_ids.npy and dataset.json (config, window, snapshot)."""
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "user_ids.npy", self.user_ids.astype(str), allow_pickle=False)
        np.save(folder / "item_ids.npy", self.item_ids.astype(str), allow_pickle=False)
        meta = {
            "shape": list(self.shape),
            "nnz": self.nnz,
            "events_read": self.events_read,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat(),
            "config": self.config.to_dict(),
            "snapshot": self.snapshot.to_dict() if self.snapshot else None,
        }
        (folder / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder


@dataclass(frozen=True)
class IdMaps:
    """The id maps and metadata saved beside a model (no matrix)."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    meta: dict[str, Any]


def load_id_maps(folder: Path) -> IdMaps:
    """Read what `InteractionData.save` wrote (memory-mapped, no pickle)."""
    try:
        users = np.load(folder / "user_ids.npy", mmap_mode="r", allow_pickle=False)
        items = np.load(folder / "item_ids.npy", mmap_mode="r", allow_pickle=False)
        meta = json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read id maps in {folder}: {exc}") from exc
    if list(meta.get("shape", [])) != [len(users), len(items)]:
        raise DatasetError(f"id maps in {folder} do not match dataset.json's shape")
    return IdMaps(users, items, meta)


# ---- building ------------------------------------------------------------------------------


class _Accumulator:
    """Aggregates (user, item, weight, timestamp) rows chunk by chunk: sum weight, max time.

    Rows are buffered as Arrow strings and folded into sorted per-pair arrays (PairSums) once
    the buffer holds an eighth as many rows as there are pairs (at least _FOLD_ROWS), so memory
    stays near 24-32 bytes per distinct pair plus a bounded buffer.

    The sums follow the rounds of the earlier builder exactly: it regrouped its aggregate with
    pandas whenever the buffer held as many rows as the aggregate (at least _MERGE_ROWS), and
    each regrouping started a fresh compensated sum from the rounded previous one. A round ends
    here at the same rows (dropping the compensation), so the matrices are bit-identical to
    that builder's; folds inside a round carry the compensation, which changes nothing.
    """

    def __init__(self) -> None:
        self.users = _Codes()
        self.items = _Codes()
        self.pending: list[tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]] = []
        self.pending_rows = 0
        self.pairs = PairSums()
        self.round_rows = 0  # rows added since the last round ended
        self.round_floor = 0  # distinct pairs when it ended
        self.events = 0

    def add(
        self,
        users: pa.Array | np.ndarray,
        items: pa.Array | np.ndarray,
        weight: np.ndarray,
        ts: np.ndarray,
    ) -> None:
        """Add events (ids as Arrow or numpy strings); those weighted 0 (types not in the
        config) are dropped here."""
        users, items = _strings(users), _strings(items)
        keep = weight > 0
        if not keep.all():
            mask = pa.array(keep)
            users, items = users.filter(mask), items.filter(mask)
            weight, ts = weight[keep], ts[keep]
        if len(users) == 0:
            return
        self.events += len(users)
        self.pending.append((users, items, weight.astype(np.float64), ts.astype(np.int64)))
        self.pending_rows += len(users)
        self.round_rows += len(users)
        if self.round_rows >= max(_MERGE_ROWS, self.round_floor):
            self._end_round()
        elif self.pending_rows >= max(_FOLD_ROWS, len(self.pairs) // 8):
            self._fold()

    def _fold(self) -> None:
        if not self.pending:
            return
        users, items, w, t = zip(*self.pending, strict=True)
        self.pending, self.pending_rows = [], 0
        key = self.users.encode(users).astype(np.int64)
        key <<= 32
        key |= self.items.encode(items)
        del users, items
        weights, times = np.concatenate(w), np.concatenate(t)
        del w, t
        self.pairs.add(key, weights, times)

    def _end_round(self) -> None:
        self._fold()
        self.pairs.end_round()
        self.round_rows, self.round_floor = 0, len(self.pairs)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(keys, sums, latest times, user ids, item ids); the accumulator is emptied."""
        self._end_round()
        keys, sums, latest = self.pairs.take()
        return keys, sums, latest, self.users.id_array(), self.items.id_array()


def _strings(values: pa.Array | np.ndarray) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    return pa.array(np.asarray(values, dtype=object), type=pa.string())


class _Codes:
    """String ids -> int codes numbered in order of first appearance, in Arrow, in bulk.

    `encode` numbers a batch of ids: known ids keep their codes (`pc.index_in`), new ones get
    the next codes in the order they first appear (`pc.dictionary_encode` numbers its
    dictionary that way): the numbering a dict.setdefault per id in arrival order gives,
    without turning every id into a Python object.
    """

    def __init__(self) -> None:
        self.ids = pa.array([], type=pa.string())  # id per code

    def encode(self, chunks: Iterable[pa.Array]) -> np.ndarray:
        values = pa.chunked_array(list(chunks), type=pa.string()).combine_chunks()
        codes = np.empty(len(values), dtype=np.int32)
        if len(self.ids):
            found = pc.index_in(values, value_set=self.ids)
            new = found.is_null().to_numpy(zero_copy_only=False)
            codes[~new] = found.drop_null().to_numpy()
            values = values.filter(pa.array(new))
        else:
            new = np.ones(len(values), dtype=bool)
        encoded = pc.dictionary_encode(values)
        codes[new] = len(self.ids) + encoded.indices.to_numpy()
        self.ids = pa.concat_arrays([self.ids, encoded.dictionary])
        return codes

    def id_array(self) -> np.ndarray:
        """The ids by code, as a numpy unicode array."""
        return np.asarray(self.ids.to_numpy(zero_copy_only=False), dtype=str)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _weights(
    types: np.ndarray | None, given: np.ndarray | None, config: DatasetConfig, n: int
) -> np.ndarray:
    weight = np.ones(n) if given is None else np.asarray(given, dtype=np.float64)
    if types is not None:
        # A handful of distinct types: weigh the uniques, then gather by code (-1 = missing).
        codes, uniques = pd.factorize(types)
        per_type = [float(config.event_weights.get(str(t), 0.0)) for t in uniques] + [0.0]
        weight = weight * np.asarray(per_type)[codes]
    return weight


def _finish(
    acc: _Accumulator,
    config: DatasetConfig,
    start: datetime | None,
    end: datetime,
    snapshot: Snapshot | None,
) -> InteractionData:
    events = acc.events
    keys, sums, latest, users, items = acc.result()
    age_days = (_ms(end) - latest) / _DAY_MS
    del latest
    if (age_days <= 0).any():
        raise DatasetError(f"events at or after the window end {end.isoformat()}")
    ages = age_days.astype(np.float32)
    del age_days
    # Decay was applied per event (see _decayed): the decayed sum is the sum of decays.
    weights = sums.astype(np.float32)
    del sums
    matrix, ages_matrix, users, items = _sorted_csr(keys, weights, ages, users, items, config)
    return InteractionData(
        matrix, ages_matrix, users, items, end, start, config, snapshot, events_read=events
    )


def _sorted_csr(
    keys: np.ndarray,
    weights: np.ndarray,
    ages: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    config: DatasetConfig,
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
    """CSR weights and ages from unique (row code << 32 | column code) keys: k-core filtered,
    rows and columns ordered by id, column indices sorted within each row."""
    rows, cols = keys >> 32, keys & 0xFFFFFFFF
    del keys
    keep_u, keep_i = _k_core(rows, cols, len(users), len(items), config)
    if not (keep_u.all() and keep_i.all()):
        alive = keep_u[rows] & keep_i[cols]
        rows, cols, weights, ages = rows[alive], cols[alive], weights[alive], ages[alive]
    # Sorted ids make the matrix layout independent of the order objects were read in.
    u_idx = np.flatnonzero(keep_u)
    i_idx = np.flatnonzero(keep_i)
    u_idx = u_idx[np.argsort(users[u_idx], kind="stable")]
    i_idx = i_idx[np.argsort(items[i_idx], kind="stable")]
    rank = np.zeros(len(users), np.int64)
    rank[u_idx] = np.arange(len(u_idx))
    key = rank[rows]
    del rows
    key <<= 32
    rank = np.zeros(len(items), np.int64)
    rank[i_idx] = np.arange(len(i_idx))
    key |= rank[cols]
    del cols, rank
    order = np.argsort(key)  # keys are unique: any sort gives the one order
    key = key[order]
    weights, ages = weights[order], ages[order]
    del order
    shape = (len(u_idx), len(i_idx))
    index_type = np.int32 if max(*shape, len(key)) < 2**31 else np.int64
    indptr = np.searchsorted(key, np.arange(shape[0] + 1, dtype=np.int64) << 32)
    indptr = indptr.astype(index_type)
    key &= 0xFFFFFFFF
    indices = key.astype(index_type)
    del key
    matrix = sp.csr_matrix((weights, indices, indptr), shape=shape, copy=False)
    ages_matrix = sp.csr_matrix((ages, indices.copy(), indptr.copy()), shape=shape, copy=False)
    matrix.has_sorted_indices = ages_matrix.has_sorted_indices = True
    return matrix, ages_matrix, users[u_idx], items[i_idx]


def _k_core(
    rows: np.ndarray, cols: np.ndarray, n_users: int, n_items: int, config: DatasetConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Users and items kept by the minimum counts, dropped repeatedly until stable."""
    keep_u = np.ones(n_users, bool)
    keep_i = np.ones(n_items, bool)
    alive = None
    while True:
        r, c = (rows, cols) if alive is None else (rows[alive], cols[alive])
        bad_u = keep_u & (np.bincount(r, minlength=n_users) < config.min_user_interactions)
        bad_i = keep_i & (np.bincount(c, minlength=n_items) < config.min_item_interactions)
        del r, c
        if not bad_u.any() and not bad_i.any():
            return keep_u, keep_i
        keep_u &= ~bad_u
        keep_i &= ~bad_i
        alive = keep_u[rows] & keep_i[cols]


def _decayed(
    weight: np.ndarray, ts: np.ndarray, end: datetime, config: DatasetConfig
) -> np.ndarray:
    if config.half_life_days is None:
        return weight
    age_days = (_ms(end) - ts.astype(np.float64)) / _DAY_MS
    return weight * np.exp2(-age_days / config.half_life_days)


class _Sink:
    """One matrix being built from the stream: its time range, config and accumulator."""

    def __init__(
        self, config: DatasetConfig, lo: datetime | None, hi: datetime, organic: bool = False
    ) -> None:
        self.config, self.lo, self.hi = config, lo, hi
        self.organic = organic  # drop events a recommendation led to (they carry a rec_id)
        self.acc = _Accumulator()
        self._lo_ms = _ms(lo) if lo else None
        self._hi_ms = _ms(hi)

    def feed(self, events: _Columns) -> None:
        ts = events.ts
        mask = ts < self._hi_ms
        if self.organic:
            mask &= ~events.recommended
        if self._lo_ms is not None:
            mask &= ts >= self._lo_ms
        ts = ts[mask]
        per_type = [float(self.config.event_weights.get(t, 0.0)) for t in events.type_names]
        weight = np.asarray([*per_type, 0.0])[events.type_codes[mask]]  # -1: no type
        keep = pa.array(mask)
        self.acc.add(
            events.actors.filter(keep),
            events.items.filter(keep),
            _decayed(weight, ts, self.hi, self.config),
            ts,
        )

    def finish(self, snapshot: Snapshot) -> InteractionData:
        return _finish(self.acc, self.config, self.lo, self.hi, snapshot)


@dataclass(frozen=True)
class _Columns:
    """One lake object's valid events as the sinks read them (ids stay Arrow strings)."""

    actors: pa.Array
    items: pa.Array
    type_codes: np.ndarray  # index into type_names, -1 when missing
    type_names: list[str]
    ts: np.ndarray  # epoch ms
    recommended: np.ndarray  # carries a rec_id


def _stream(lake: Lake, lo: datetime | None, hi: datetime, sinks: list[_Sink]) -> Snapshot:
    snapshot = Snapshot(lake.uri, lo.isoformat() if lo else None, hi.isoformat())
    _feed(lake, lo, hi, sinks, snapshot)
    return snapshot


@contextmanager
def _system_pool() -> Iterator[None]:
    """Arrow allocates from malloc (its system pool) inside the block, then the pool before.

    Why: Arrow's default pool (mimalloc) kept ~100 MB of the pages a 10M-event read freed
    (Parquet pages, id buffers), which numpy and implicit, allocating with malloc, could not
    reuse: `recloop train` peaked ~50-70 MB higher through the fits. pyarrow has one default
    pool per process, so this is process-wide while the read lasts; buffers keep the pool
    that allocated them, so switching back is safe.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _feed(
    lake: Lake, lo: datetime | None, hi: datetime, sinks: list[_Sink], snapshot: Snapshot
) -> None:
    # The lake reads each hour once, by its manifest, without repeated event ids.
    for table in lake.iter_events(lo, hi, _LAKE_COLUMNS, snapshot):
        actors = pc.coalesce(table.column("user_id"), table.column("visitor_id"))
        valid = pc.and_(pc.is_valid(actors), pc.is_valid(table.column("item_id")))
        table = table.append_column("actor", actors).filter(valid)
        types = pc.dictionary_encode(table.column("event_type").combine_chunks())
        events = _Columns(
            actors=table.column("actor").combine_chunks(),
            items=table.column("item_id").combine_chunks(),
            type_codes=types.indices.fill_null(-1).to_numpy(),
            type_names=[str(t) for t in types.dictionary.to_pylist()],
            ts=table.column("timestamp").cast(pa.int64()).to_numpy(),
            recommended=pc.is_valid(table.column("rec_id")).to_numpy(zero_copy_only=False),
        )
        for sink in sinks:
            sink.feed(events)


def _window_end(lake: Lake, lo: datetime | None, hi: datetime | None) -> datetime:
    if hi is not None:
        return hi
    span = lake.hour_span(lo, None)
    return span[1] if span else datetime.now(UTC).replace(microsecond=0)


def from_lake(
    lake: Lake,
    start: datetime | date | str | None,
    end: datetime | date | str | None,
    config: DatasetConfig | None = None,
    organic: bool = False,
) -> InteractionData:
    """Build interaction data from lake events in [start, end), streaming object by object.

    The returned data carries the Snapshot (every object read, with checksums). When `end` is
    None, the window ends at the end of the newest hour partition in the lake. `organic`
    leaves out events a recommendation led to (they carry a rec_id), as evaluation windows do.
    """
    lo = as_utc(start)
    hi = _window_end(lake, lo, as_utc(end))
    sink = _Sink(config or DatasetConfig(), lo, hi, organic=organic)
    with _system_pool():
        return sink.finish(_stream(lake, lo, hi, [sink]))


@dataclass
class WindowSplit:
    """One scan of a lake window, three matrices.

    train: events in [start, split_at), decayed relative to split_at (fit candidates on it);
    validation: `test_types` event counts in [split_at, end), aligned to train's id maps;
    full: every event in [start, end) (refit the chosen configuration on it).
    With `organic_test`, validation leaves out events a recommendation led to (a rec_id).
    """

    train: InteractionData
    validation: sp.csr_matrix
    full: InteractionData


def split_lake_window(
    lake: Lake,
    start: datetime | date | str | None,
    split_at: datetime | date | str,
    end: datetime | date | str | None = None,
    config: DatasetConfig | None = None,
    test_types: Iterable[str] = ("click",),
    organic_test: bool = False,
) -> WindowSplit:
    """Train / validation / full matrices from a single streaming pass over [start, end).

    `organic_test` drops events carrying a rec_id from the validation matrix: a click on a
    recommended list happened because the serving model showed the item, so counting it
    scores every model by its agreement with that model (see the pipeline's gate).
    """
    config = config or DatasetConfig()
    lo, at = as_utc(start), _required(split_at)
    hi = _window_end(lake, lo, as_utc(end))
    if not at < hi or (lo is not None and not lo < at):
        raise DatasetError(f"split_at {at.isoformat()} must fall inside the window")
    test_sink = _Sink(_test_config(test_types), at, hi, organic=organic_test)
    sinks = [_Sink(config, lo, at), test_sink, _Sink(config, lo, hi)]
    with _system_pool():
        snapshot = _stream(lake, lo, hi, sinks)
        _release_free_memory()
        train, test, full = (sink.finish(snapshot) for sink in sinks)
        validation = align(test, train.user_ids, train.item_ids)
        del test, sinks
    _release_free_memory()
    return WindowSplit(train, validation, full)


def _release_free_memory() -> None:
    """Hand the pages the read freed back to the system before the fits allocate theirs.

    glibc keeps freed heap pages (the folds' temporaries under 32 MB come from the heap once
    larger arrays have been freed), and Arrow's default pool keeps what it freed; both count
    in the process's RSS until trimmed.
    """
    pa.default_memory_pool().release_unused()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return
    libc.malloc_trim(0)


def from_table(
    table: pa.Table | pd.DataFrame,
    config: DatasetConfig | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    type_col: str | None = "event_type",
    weight_col: str | None = None,
    end: datetime | date | str | None = None,
) -> InteractionData:
    """Build interaction data from an in-memory table of events (tests, MovieLens, imports).

    Without a `type_col` column every row counts as one event (times `weight_col` when given).
    Integer timestamps are Unix seconds. `end` defaults to just after the newest event.
    """
    config = config or DatasetConfig()
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    missing = [c for c in (user_col, item_col, time_col, weight_col) if c and c not in frame]
    if missing:
        raise DatasetError(f"event table lacks column(s) {missing}; has {list(frame.columns)}")
    ts = _timestamps_ms(frame[time_col])
    hi = as_utc(end)
    if hi is None:
        hi = datetime.fromtimestamp((int(ts.max()) + 1) / 1000 if len(ts) else 0, UTC)
    types = frame[type_col].to_numpy() if type_col and type_col in frame else None
    given = frame[weight_col].to_numpy() if weight_col else None
    weight = _decayed(_weights(types, given, config, len(frame)), ts, hi, config)
    acc = _Accumulator()
    acc.add(
        frame[user_col].astype(str).to_numpy(), frame[item_col].astype(str).to_numpy(), weight, ts
    )
    return _finish(acc, config, None, hi, None)


def _timestamps_ms(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(column) or pd.api.types.is_float_dtype(column):
        return (column.to_numpy(dtype=np.float64) * 1000).astype(np.int64)
    try:
        stamps = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"cannot read timestamps: {exc}") from exc
    return stamps.to_numpy(dtype="datetime64[ms]").astype(np.int64)


def align(data: InteractionData, user_ids: np.ndarray, item_ids: np.ndarray) -> sp.csr_matrix:
    """`data`'s matrix re-indexed onto other id maps; unknown users and items are dropped."""
    users = pd.Index(np.asarray(user_ids).astype(str))
    items = pd.Index(np.asarray(item_ids).astype(str))
    coo = data.matrix.tocoo()
    rows = users.get_indexer(data.user_ids.astype(str))[coo.row]
    cols = items.get_indexer(data.item_ids.astype(str))[coo.col]
    keep = (rows >= 0) & (cols >= 0)
    shape = (len(users), len(items))
    return sp.csr_matrix((coo.data[keep], (rows[keep], cols[keep])), shape=shape, dtype=np.float32)


def _test_config(test_types: Iterable[str]) -> DatasetConfig:
    return DatasetConfig(event_weights=dict.fromkeys(test_types, 1.0))


def temporal_split(
    table: pa.Table | pd.DataFrame,
    split_at: datetime | date | str,
    test_end: datetime | date | str | None = None,
    config: DatasetConfig | None = None,
    test_types: Iterable[str] = ("click",),
    **columns: Any,
) -> tuple[InteractionData, sp.csr_matrix]:
    """Train on events before `split_at`; test on `test_types` events in [split_at, test_end).

    The test matrix (event counts) is aligned to the train id maps: users and items the train
    window never saw cannot be recommended, so they are not scored.
    """
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    time_col = columns.get("time_col", "timestamp")
    ts = _timestamps_ms(frame[time_col])
    at = _ms(_required(split_at))
    hi = as_utc(test_end)
    before = ts < at
    after = (ts >= at) & (ts < _ms(hi) if hi else True)
    if not before.any() or not after.any():
        raise DatasetError(f"split at {split_at} leaves an empty train or test window")
    train = from_table(frame[before], config, end=_required(split_at), **columns)
    test = from_table(frame[after], _test_config(test_types), end=hi, **columns)
    return train, align(test, train.user_ids, train.item_ids)


def temporal_split_lake(
    lake: Lake,
    start: datetime | date | str | None,
    split_at: datetime | date | str,
    test_end: datetime | date | str,
    config: DatasetConfig | None = None,
    test_types: Iterable[str] = ("click",),
) -> tuple[InteractionData, sp.csr_matrix]:
    """`temporal_split` on the lake: train on [start, split_at), test on [split_at, test_end)."""
    split = split_lake_window(lake, start, split_at, test_end, config, test_types)
    return split.train, split.validation


def _required(value: datetime | date | str) -> datetime:
    parsed = as_utc(value)
    if parsed is None:
        raise DatasetError("a split time is required")
    return parsed


def stratified_split(
    matrix: sp.csr_matrix, test_fraction: float = 0.25, seed: int = 42
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per-user random split: each user keeps round((1 - test_fraction) * n) items in train.

    Seeded, so the same matrix and seed give the same split. Rounding follows the Microsoft
    Recommenders stratified splitter (a user with one item keeps it in train).
    """
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    rng = np.random.default_rng(seed)
    row = np.repeat(np.arange(matrix.shape[0]), counts)
    # A random rank within each row: sort by (row, random key).
    order = np.lexsort((rng.random(matrix.nnz), row))
    rank = np.empty(matrix.nnz, dtype=np.int64)
    rank[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    n_test = counts - np.round(counts * (1 - test_fraction)).astype(np.int64)
    is_test = rank < np.repeat(n_test, counts)
    coo = matrix.tocoo()
    parts = []
    for mask in (~is_test, is_test):
        parts.append(
            sp.csr_matrix(
                (coo.data[mask], (coo.row[mask], coo.col[mask])),
                shape=matrix.shape,
                dtype=np.float32,
            )
        )
    return parts[0], parts[1]
