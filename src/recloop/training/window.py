"""A training window read once: every sub-window the pipeline needs is sliced from memory.

The pipeline needs five matrices from one lake window (search train, validation clicks, holdout
train, holdout clicks, the whole window). Reading the lake five times costs five scans of every
object (one GET each on S3); this reads each object once, keeps only compact columns (actor and
item as dictionary codes, event type, timestamp in ms) and hands sub-windows to
`dataset.from_table`, so weighting, decay and filters are the dataset builder's own.

Duplicates are dropped by event id across the whole window (the first copy wins), which is what
`dataset.from_lake` does per partition: a redelivered event keeps its timestamp, so its copies
share a partition.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recloop.lake import Lake, Snapshot
from recloop.training import dataset as ds

_COLUMNS = ["event_id", "event_type", "timestamp", "user_id", "visitor_id", "item_id"]
CLICKS = ds.DatasetConfig(event_weights={"click": 1.0})


class EventWindow:
    """The events of [start, end) with the snapshot of the objects they came from."""

    def __init__(self, frame: pd.DataFrame, snapshot: Snapshot) -> None:
        self.frame = frame
        self.snapshot = snapshot
        self._ms = frame["timestamp"].to_numpy(dtype="datetime64[ms]").astype(np.int64)

    @classmethod
    def read(cls, lake: Lake, start: datetime | None, end: datetime) -> EventWindow:
        """Stream the window object by object (projected), keeping compact columns."""
        snapshot = Snapshot(lake.uri, start.isoformat() if start else None, end.isoformat())
        parts = []
        for table in lake.iter_events(start, end, _COLUMNS, snapshot):
            actor = pc.coalesce(table.column("user_id"), table.column("visitor_id"))
            keep = pc.and_(pc.is_valid(actor), pc.is_valid(table.column("item_id")))
            parts.append(
                pa.table(
                    {
                        "event_id": table.column("event_id"),
                        "actor": actor,
                        "item": table.column("item_id"),
                        "event_type": table.column("event_type"),
                        "timestamp": table.column("timestamp"),
                    }
                ).filter(keep)
            )
        return cls(_compact(parts), snapshot)

    @property
    def events(self) -> int:
        return len(self.frame)

    def interactions(
        self, start: datetime | None, end: datetime, config: ds.DatasetConfig
    ) -> ds.InteractionData:
        """The dataset builder's matrix for [start, end), decayed relative to `end`."""
        mask = self._ms < _ms(end)
        if start is not None:
            mask &= self._ms >= _ms(start)
        data = ds.from_table(
            self.frame[mask],
            config,
            user_col="actor",
            item_col="item",
            time_col="timestamp",
            type_col="event_type",
            end=end,
        )
        data.start = start
        return data

    def clicks(self, start: datetime, end: datetime, train: ds.InteractionData) -> sp.csr_matrix:
        """Click counts in [start, end) on `train`'s id maps (the test matrix)."""
        return ds.align(self.interactions(start, end, CLICKS), train.user_ids, train.item_ids)


def _compact(parts: list[pa.Table]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(
            {
                "actor": pd.Categorical([]),
                "item": pd.Categorical([]),
                "event_type": pd.Categorical([]),
                "timestamp": pd.to_datetime(pd.Series([], dtype="int64"), unit="ms", utc=True),
            }
        )
    table = pa.concat_tables(parts).combine_chunks()
    # First copy of each event id, by Arrow's hash grouping (no Python string per event).
    rows = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    first = rows.group_by("event_id", use_threads=False).aggregate([("_row", "min")])
    if first.num_rows < table.num_rows:
        table = table.take(np.sort(first.column("_row_min").to_numpy()))
    columns = {
        name: pc.dictionary_encode(table.column(name)).combine_chunks().to_pandas()
        for name in ("actor", "item", "event_type")
    }
    columns["timestamp"] = table.column("timestamp").to_pandas()
    return pd.DataFrame(columns)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)
