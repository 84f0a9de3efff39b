"""Engagement from the lake: impressions joined with their clicks by rec_id, as CTR.

Every impression the API serves carries a `rec_id`, the `model_version` that ranked it and the
`item_ids` shown; a click carries the `rec_id` of the list it came from. A click counts for the
impression with the same rec_id *and* item, and only if it arrives within the attribution window
after that impression, so that windows compared with each other give their impressions the same
chance to be clicked.

Two rates are kept:
- `ctr`: the share of impressions (lists) with at least one click. Each impression is one
  Bernoulli trial, which is what the drop detector's tests assume.
- `slot_ctr`: clicked slots over shown slots, the usual per-item CTR.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recloop.events import EVENT_SCHEMA, EventType, conform
from recloop.lake import Lake
from recloop.monitoring.errors import MonitorError

_READ_COLUMNS = [
    "event_type",
    "timestamp",
    "rec_id",
    "model_version",
    "item_id",
    "item_ids",
    "user_id",
    "visitor_id",
    "device",
]
# Clients' clocks disagree a little: a click stamped slightly before its impression still counts.
_CLICK_SKEW_MS = 60_000
UNKNOWN_VERSION = "unknown"
FRAME_COLUMNS = ["rec_id", "timestamp", "model_version", "actor_id", "device", "slots", "clicks"]


@dataclass(frozen=True)
class Counts:
    """Impressions and clicks of one group: enough for a CTR and a two-proportion test."""

    impressions: int = 0
    clicked: int = 0  # impressions with at least one attributed click
    slots: int = 0
    clicks: int = 0

    @property
    def ctr(self) -> float:
        return self.clicked / self.impressions if self.impressions else 0.0

    @property
    def slot_ctr(self) -> float:
        return self.clicks / self.slots if self.slots else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "impressions": self.impressions,
            "clicked": self.clicked,
            "slots": self.slots,
            "clicks": self.clicks,
            "ctr": round(self.ctr, 6),
            "slot_ctr": round(self.slot_ctr, 6),
        }


def _utc(value: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


@dataclass
class Engagement:
    """One row per impression in [start, end) with its attributed clicks.

    Columns: rec_id, timestamp (UTC), model_version ("unknown" when absent), actor_id, device,
    slots (items shown), clicks (distinct shown items clicked within the attribution window).
    """

    frame: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    unmatched_clicks: int = 0  # clicks whose rec_id/item matched no impression read

    @classmethod
    def from_lake(
        cls,
        lake: Lake,
        start: datetime,
        end: datetime,
        attribution: timedelta = timedelta(minutes=15),
    ) -> Engagement:
        """Impressions in [start, end) and clicks up to `attribution` after `end`."""
        lo, hi = _utc(start), _utc(end)
        if hi <= lo:
            raise MonitorError(f"empty engagement window: {lo} .. {hi}")
        table = _read_impressions_and_clicks(lake, lo, hi + pd.Timedelta(attribution))
        return cls.from_table(table, lo, hi, attribution)

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        start: datetime,
        end: datetime,
        attribution: timedelta = timedelta(minutes=15),
    ) -> Engagement:
        """The same from an events table in the lake schema (any extra event types ignored)."""
        lo, hi = _utc(start), _utc(end)
        frame, unmatched = _join(table, lo, hi, pd.Timedelta(attribution))
        return cls(frame, lo, hi, unmatched)

    @classmethod
    def concat(cls, parts: Sequence[Engagement]) -> Engagement:
        """Several disjoint windows as one (e.g. a baseline and a current window)."""
        if not parts:
            raise MonitorError("nothing to concatenate")
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        frame = frame.drop_duplicates("rec_id").sort_values("timestamp", kind="stable")
        return cls(
            frame.reset_index(drop=True),
            min(p.start for p in parts),
            max(p.end for p in parts),
            sum(p.unmatched_clicks for p in parts),
        )

    # ---- slicing and counting --------------------------------------------------------------

    def window(self, start: datetime, end: datetime) -> pd.DataFrame:
        """Impressions whose timestamp is in [start, end)."""
        ts = self.frame["timestamp"]
        return self.frame[(ts >= _utc(start)) & (ts < _utc(end))]

    def counts(
        self,
        model_version: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Counts:
        """Counts of one model version (None: all) in [start, end) (None: the whole frame)."""
        frame = self.window(start or self.start, end or self.end)
        if model_version is not None:
            frame = frame[frame["model_version"] == model_version]
        return _counts(frame)

    def versions(self) -> list[str]:
        """Model versions seen, most impressions first."""
        return list(self.frame["model_version"].value_counts().index.astype(str))

    def with_cohort(self, known_users: Iterable[str] | np.ndarray) -> Engagement:
        """A copy with a `cohort` column: "returning" for actors in `known_users`, else "new"."""
        known = pd.Index(
            np.asarray(
                list(known_users) if not isinstance(known_users, np.ndarray) else known_users,
                dtype=object,
            )
        )
        frame = self.frame.copy()
        frame["cohort"] = np.where(frame["actor_id"].isin(known), "returning", "new")
        return Engagement(frame, self.start, self.end, self.unmatched_clicks)

    def ctr(self, by: Sequence[str] = ("model_version",), freq: str | None = None) -> pd.DataFrame:
        """CTR table grouped by `by` columns and, with `freq` ("1h", "1D", "15min"), by time.

        Columns: [bucket], *by, impressions, clicked, slots, clicks, ctr, slot_ctr.
        """
        missing = [c for c in by if c not in self.frame.columns]
        if missing:
            raise MonitorError(f"cannot group by {missing}: columns are {list(self.frame.columns)}")
        keys: list[str] = list(by)
        frame = self.frame.assign(clicked=(self.frame["clicks"] > 0).astype("int64"))
        if freq is not None:
            try:
                frame["bucket"] = frame["timestamp"].dt.floor(freq)
            except ValueError as exc:
                raise MonitorError(f"bad time bucket {freq!r}: {exc}") from exc
            keys = ["bucket", *keys]
        if not keys:
            keys = ["_all"]
            frame["_all"] = "all"
        grouped = frame.groupby(keys, dropna=False, sort=True).agg(
            impressions=("rec_id", "size"),
            clicked=("clicked", "sum"),
            slots=("slots", "sum"),
            clicks=("clicks", "sum"),
        )
        out = grouped.reset_index()
        out["ctr"] = out["clicked"] / out["impressions"]
        out["slot_ctr"] = np.where(
            out["slots"] > 0, out["clicks"] / out["slots"].clip(lower=1), 0.0
        )
        return out.drop(columns=["_all"], errors="ignore")


def _counts(frame: pd.DataFrame) -> Counts:
    clicks = frame["clicks"].to_numpy()
    return Counts(
        impressions=len(frame),
        clicked=int((clicks > 0).sum()),
        slots=int(frame["slots"].sum()),
        clicks=int(clicks.sum()),
    )


def _empty(columns: list[str]) -> pa.Table:
    return conform(EVENT_SCHEMA.empty_table(), columns).select(columns)


def _read_impressions_and_clicks(lake: Lake, lo: pd.Timestamp, hi: pd.Timestamp) -> pa.Table:
    wanted = pa.array([EventType.IMPRESSION.value, EventType.CLICK.value])
    parts = []
    # Object by object, keeping only the two event types: memory follows impressions + clicks,
    # not all traffic in the window.
    for chunk in lake.iter_events(lo.to_pydatetime(), hi.to_pydatetime(), columns=_READ_COLUMNS):
        keep = chunk.filter(pc.is_in(chunk.column("event_type"), value_set=wanted))
        if keep.num_rows:
            parts.append(keep)
    return pa.concat_tables(parts) if parts else _empty(_READ_COLUMNS)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rec_id": pd.Series([], dtype=object),
            "timestamp": pd.Series([], dtype="datetime64[ms, UTC]"),
            "model_version": pd.Series([], dtype=object),
            "actor_id": pd.Series([], dtype=object),
            "device": pd.Series([], dtype=object),
            "slots": pd.Series([], dtype="int64"),
            "clicks": pd.Series([], dtype="int64"),
        }
    )


def _ms(column: pa.ChunkedArray) -> np.ndarray:
    """Epoch milliseconds of a timestamp[ms] column."""
    return np.asarray(column.cast(pa.int64()).to_numpy(), dtype="int64")


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    field = EVENT_SCHEMA.field(name)
    return pa.chunked_array([pa.nulls(table.num_rows, field.type)])


def _join(
    table: pa.Table, lo: pd.Timestamp, hi: pd.Timestamp, attribution: pd.Timedelta
) -> tuple[pd.DataFrame, int]:
    if "timestamp" not in table.column_names or "event_type" not in table.column_names:
        raise MonitorError("an events table needs timestamp and event_type columns")
    table = table.set_column(
        table.schema.get_field_index("timestamp"),
        "timestamp",
        _column(table, "timestamp").cast(pa.timestamp("ms", tz="UTC")),
    )
    event_type = _column(table, "event_type")
    ts = _column(table, "timestamp")
    has_rec = pc.is_valid(_column(table, "rec_id"))
    in_window = pc.and_(
        pc.greater_equal(ts, pa.scalar(lo.to_pydatetime(), ts.type)),
        pc.less(ts, pa.scalar(hi.to_pydatetime(), ts.type)),
    )
    imp_mask = pc.and_(pc.and_(pc.equal(event_type, "impression"), has_rec), in_window)
    imps = table.filter(imp_mask)
    # A redelivered impression (same rec_id) is one impression.
    rec_ids = _column(imps, "rec_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(rec_ids, return_index=True)
    if len(first) < imps.num_rows:
        imps = imps.take(np.sort(first))
    if imps.num_rows == 0:
        frame = _empty_frame()
    else:
        item_ids = _column(imps, "item_ids")
        actor = pc.coalesce(_column(imps, "user_id"), _column(imps, "visitor_id"))
        frame = pd.DataFrame(
            {
                "rec_id": _column(imps, "rec_id").to_numpy(zero_copy_only=False),
                "timestamp": _column(imps, "timestamp").to_pandas(),
                "model_version": pc.fill_null(
                    _column(imps, "model_version"), UNKNOWN_VERSION
                ).to_numpy(zero_copy_only=False),
                "actor_id": actor.to_numpy(zero_copy_only=False),
                "device": pc.fill_null(_column(imps, "device"), "unknown").to_numpy(
                    zero_copy_only=False
                ),
                "slots": pc.fill_null(pc.list_value_length(item_ids), 0).to_numpy().astype("int64"),
                "clicks": np.zeros(imps.num_rows, dtype="int64"),
            }
        )
    click_mask = pc.and_(
        pc.and_(pc.equal(event_type, "click"), has_rec), pc.is_valid(_column(table, "item_id"))
    )
    clicks = table.filter(click_mask)
    if clicks.num_rows == 0:
        return frame, 0
    if frame.empty:
        return frame, clicks.num_rows
    matched, unmatched = _attribute(imps, frame, clicks, attribution, hi)
    frame["clicks"] = matched
    return frame, unmatched


def _attribute(
    imps: pa.Table,
    frame: pd.DataFrame,
    clicks: pa.Table,
    attribution: pd.Timedelta,
    hi: pd.Timestamp,
) -> tuple[np.ndarray, int]:
    """Distinct shown items clicked per impression, and the clicks that matched nothing."""
    item_ids = _column(imps, "item_ids").combine_chunks()
    slots = pd.DataFrame(
        {
            "imp": pc.list_parent_indices(item_ids).to_numpy(),
            "item_id": pc.list_flatten(item_ids).to_numpy(zero_copy_only=False),
        }
    )
    slots["rec_id"] = frame["rec_id"].to_numpy()[slots["imp"].to_numpy()]
    slots = slots.drop_duplicates(["rec_id", "item_id"])
    clk = pd.DataFrame(
        {
            "rec_id": _column(clicks, "rec_id").to_numpy(zero_copy_only=False),
            "item_id": _column(clicks, "item_id").to_numpy(zero_copy_only=False),
            "click_ms": _ms(_column(clicks, "timestamp")),
        }
    )
    joined = clk.merge(slots, on=["rec_id", "item_id"], how="left")
    found = joined["imp"].notna().to_numpy()
    # Clicks after `hi` were read only to credit impressions inside the window.
    unmatched = int((~found & (joined["click_ms"].to_numpy() < hi.value // 1_000_000)).sum())
    joined = joined[found]
    imp_index = joined["imp"].to_numpy().astype("int64")
    delay_ms = joined["click_ms"].to_numpy() - _ms(_column(imps, "timestamp"))[imp_index]
    ok = (delay_ms >= -_CLICK_SKEW_MS) & (delay_ms <= attribution.value // 1_000_000)
    # One item clicked twice in one list is one click.
    hits = joined[ok].drop_duplicates(["rec_id", "item_id"])
    counts = np.bincount(hits["imp"].to_numpy().astype("int64"), minlength=len(frame))
    return counts.astype("int64"), unmatched
