"""Per-key weight sums and latest times over a stream of rows, kept in sorted numpy arrays.

The dataset builder aggregates events per (user, item) pair, one int64 key per pair. Sums are
compensated (Kahan) and taken in arrival order within each key, step for step as pandas'
groupby sum computes them (including its reset of a non-finite compensation), so the sums are
the same floating-point numbers pandas gave, while memory stays at 24 bytes per key (plus 8 for
the compensation, only once some sum actually carries one) and rows are folded in by a sorted
merge rather than by regrouping everything seen so far.
"""

from __future__ import annotations

import numpy as np


class PairSums:
    """Sorted unique int64 keys, each with a compensated weight sum and a latest time.

    `add` folds rows in, in arrival order; `end_round` drops the compensation, as grouping a
    table that starts with the previous sums (pandas: a fresh compensation per groupby) does.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, np.int64)
        self.sums = np.empty(0, np.float64)
        self.latest = np.empty(0, np.int64)
        self.comp: np.ndarray | None = None  # Kahan compensation per key; None: all zero

    def __len__(self) -> int:
        return len(self.keys)

    def end_round(self) -> None:
        """Forget the compensation: later rows add to the rounded sums."""
        self.comp = None

    def add(self, keys: np.ndarray, weights: np.ndarray, times: np.ndarray) -> None:
        """Fold rows (int64 key, float64 weight, int64 time), given in arrival order."""
        if len(keys) == 0:
            return
        # Stable: a key's rows keep their arrival order, which the compensated sum follows.
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        unique = keys[starts]
        del keys
        weights = weights[order]
        latest = np.maximum.reduceat(times[order], starts)
        del order

        pos = np.searchsorted(self.keys, unique)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == unique[found]
        hit = pos[found]
        sums = np.zeros(len(unique))
        comp = np.zeros(len(unique))
        sums[found] = self.sums[hit]
        if self.comp is not None:
            comp[found] = self.comp[hit]
        _kahan(sums, comp, weights, starts)
        del weights, starts

        self.sums[hit] = sums[found]
        self.latest[hit] = np.maximum(self.latest[hit], latest[found])
        if self.comp is None and comp.any():
            self.comp = np.zeros(len(self.keys))
        if self.comp is not None:
            self.comp[hit] = comp[found]
        new = ~found
        at = pos[new]
        self.keys = np.insert(self.keys, at, unique[new])
        self.sums = np.insert(self.sums, at, sums[new])
        self.latest = np.insert(self.latest, at, latest[new])
        if self.comp is not None:
            self.comp = np.insert(self.comp, at, comp[new])

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, sums, latest), handing the arrays over: this object is empty afterwards."""
        out = self.keys, self.sums, self.latest
        self.keys = np.empty(0, np.int64)
        self.sums = np.empty(0, np.float64)
        self.latest = np.empty(0, np.int64)
        self.comp = None
        return out


def _kahan(sums: np.ndarray, comp: np.ndarray, values: np.ndarray, starts: np.ndarray) -> None:
    """Add each group's values (values[starts[g]:starts[g + 1]], in order) to sums[g], in place.

    One vectorised step per rank within a group: the first row of every group, then the second
    row of every group that has one, and so on, the groups ordered by size so that the groups
    still active are a prefix.
    """
    if len(starts) == 0:
        return
    _step(sums, comp, values[starts])
    sizes = np.diff(starts, append=len(values))
    multi = np.flatnonzero(sizes > 1)
    if len(multi) == 0:
        return
    multi = multi[np.argsort(-sizes[multi], kind="stable")]
    neg_sizes, first = -sizes[multi], starts[multi]
    s, c = sums[multi], comp[multi]
    for rank in range(1, -int(neg_sizes[0])):
        m = int(np.searchsorted(neg_sizes, -rank, side="left"))  # groups with > rank rows
        _step(s[:m], c[:m], values[first[:m] + rank])
    sums[multi] = s
    comp[multi] = c


def _step(s: np.ndarray, c: np.ndarray, y: np.ndarray) -> None:
    """One step of pandas' group_sum for every group at once, in place (y: the values, a
    scratch array): y = v - c; t = s + y; c = (t - s) - y, reset to 0 when not finite; s = t."""
    y -= c
    t = s + y
    np.subtract(t, s, out=c)
    c -= y
    bad = ~np.isfinite(c)
    if bad.any():
        c[bad] = 0.0
    s[...] = t
