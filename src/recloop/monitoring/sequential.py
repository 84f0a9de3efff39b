"""The drop detector's statistics: a CUSUM on time blocks whose false alarms are bounded per day.

Why a CUSUM on blocks rather than a test per check: a test repeated at every check (60 s in the
loop, 15 min in the Lambda) fires at its level *per check*, so false alarms grow with the check
rate. Here the statistic is a function of the data's time blocks only: a check recomputes the
same path and sees the same crossings whether it runs every minute or every hour, and the
false-alarm rate is a property of the blocks, not of the checks.

The pieces, each a plain function on arrays so that the detector and the benchmark run the same
code:
- `DiurnalShape`: CTR by hour of day (a Fourier series fitted to hourly CTR over the past days,
  all versions), so that a quiet night hour is not read as a drop against a busy afternoon.
- `BlockStats`: per time block, impressions, clicked impressions and the sums a user-clustered
  variance needs (Σo², Σon, Σn² over the users in the block): several impressions of one user
  are not independent trials.
- `reference`: the expected-CTR level (the model's own clicks over its shape-weighted
  impressions in the reference window) and the design effect (how much user clustering inflates
  the binomial variance), both from the reference window.
- `cusum`: Page's CUSUM of the Gaussian log-likelihood ratio "CTR is (1 - r) x expected" against
  "CTR is as expected", reset to 0 after each crossing. For a CUSUM of log-likelihood ratios the
  in-control average run length is at least e^h steps (Lorden 1971: it is a sequence of SPRTs,
  each crossing h with probability <= e^-h under no change), whatever the volume per block; so
  `threshold_for` sets h = ln(blocks per period / false alarms per period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from recloop.monitoring.errors import MonitorError

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
PERIOD_30_DAYS_S = 30 * DAY_S


def threshold_for(
    false_alarms: float,
    block_seconds: float,
    information: float | None = None,
    period_s: float = PERIOD_30_DAYS_S,
) -> float:
    """CUSUM threshold h whose in-control run length is period / false_alarms, in blocks.

    Without `information`: Lorden's bound, h = ln(blocks): the run length is at least e^h
    whatever the traffic. With it (the log-likelihood ratio's variance per block, I), Siegmund's
    approximation for a CUSUM of N(-I/2, I) steps, ARL = (e^b - b - 1) / (I/2) with
    b = h + 1.166 sqrt(I): closer to the real run length, so a lower h and faster detection
    (bench/monitor_drop.py measures the false alarms this gives). Never above Lorden's h.
    """
    if false_alarms <= 0 or block_seconds <= 0:
        raise MonitorError("the false-alarm rate and the block width must be positive")
    blocks = max(period_s / block_seconds / false_alarms, 2.0)
    lorden = math.log(blocks)
    if information is None or information <= 0:
        return lorden

    def arl(h: float) -> float:
        b = h + 1.166 * math.sqrt(information)
        return (math.expm1(b) - b) / (information / 2)

    lo, hi = 0.0, lorden
    if arl(hi) < blocks:
        return lorden
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid) < blocks else (lo, mid)
    return hi


@dataclass(frozen=True)
class DiurnalShape:
    """CTR multiplier by hour of day (mean 1 over the day); flat when there is too little data."""

    coef: tuple[float, ...] = ()  # cos/sin pairs of harmonics 1..k on log CTR
    hours_seen: int = 0  # distinct hours of day with data, for the evidence

    @property
    def flat(self) -> bool:
        return not self.coef

    def at(self, seconds: np.ndarray) -> np.ndarray:
        """Multipliers at epoch seconds (UTC)."""
        seconds = np.asarray(seconds, dtype=float)
        if self.flat:
            return np.ones_like(seconds)
        angle = 2 * np.pi * (seconds % DAY_S) / DAY_S
        log = np.zeros_like(seconds)
        for k in range(len(self.coef) // 2):
            log += self.coef[2 * k] * np.cos((k + 1) * angle)
            log += self.coef[2 * k + 1] * np.sin((k + 1) * angle)
        return np.asarray(np.exp(log), dtype=float)

    def to_dict(self) -> dict[str, object]:
        if self.flat:
            return {"flat": True, "hours_seen": self.hours_seen}
        hours = np.arange(24) * HOUR_S + HOUR_S / 2
        return {
            "flat": False,
            "hours_seen": self.hours_seen,
            "by_hour": [round(float(v), 4) for v in self.at(hours)],
        }


def fit_shape(
    seconds: np.ndarray,
    impressions: np.ndarray,
    clicked: np.ndarray,
    harmonics: int = 2,
    min_hours: int = 18,
) -> DiurnalShape:
    """Fit log CTR by hour of day as a Fourier series (weighted by clicks) on hourly counts.

    `seconds` are the epoch seconds of hourly (or finer) buckets, possibly over several days.
    A low-order series, not 24 free hourly means: a day of traffic at 5% CTR has a few hundred
    clicks an hour, and 24 noisy means would put their noise into every expected value. With
    fewer than `min_hours` distinct hours of day covered, the shape is flat.
    """
    hour = (np.asarray(seconds, dtype=float) % DAY_S) // HOUR_S
    n = np.bincount(hour.astype(int), weights=impressions, minlength=24)
    c = np.bincount(hour.astype(int), weights=clicked, minlength=24)
    seen = (n > 0) & (c > 0)
    if harmonics <= 0 or int(seen.sum()) < min_hours:
        return DiurnalShape((), int(seen.sum()))
    mid = (np.arange(24) + 0.5)[seen] * HOUR_S
    angle = 2 * np.pi * mid / DAY_S
    columns = [np.ones_like(angle)]
    for k in range(1, harmonics + 1):
        columns += [np.cos(k * angle), np.sin(k * angle)]
    x = np.column_stack(columns)
    y = np.log(c[seen] / n[seen])
    w = np.sqrt(c[seen])  # var(log ctr) ~ 1/clicks
    beta, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    return DiurnalShape(tuple(float(b) for b in beta[1:]), int(seen.sum()))


@dataclass(frozen=True)
class BlockStats:
    """Per time block: impressions, clicked impressions and user-cluster sums (arrays)."""

    start: np.ndarray  # epoch seconds of each block's start
    impressions: np.ndarray
    clicked: np.ndarray
    s_oo: np.ndarray  # Σ over users in the block of clicked²
    s_on: np.ndarray  # Σ clicked x impressions
    s_nn: np.ndarray  # Σ impressions²

    def __len__(self) -> int:
        return len(self.start)

    def select(self, mask: np.ndarray) -> BlockStats:
        return BlockStats(*(getattr(self, f)[mask] for f in _BLOCK_FIELDS))


_BLOCK_FIELDS = ("start", "impressions", "clicked", "s_oo", "s_on", "s_nn")


def block_stats(
    seconds: np.ndarray, actor: np.ndarray, clicked: np.ndarray, block_s: float
) -> BlockStats:
    """Per-block stats of impressions at `seconds` by integer `actor` codes (clicked: 0/1)."""
    seconds = np.asarray(seconds, dtype=float)
    if len(seconds) == 0:
        empty = np.zeros(0)
        return BlockStats(empty, empty, empty, empty, empty, empty)
    block = np.floor(seconds / block_s).astype(np.int64)
    pair = np.stack([block, np.asarray(actor, dtype=np.int64)], axis=1)
    keys, inverse = np.unique(pair, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_u = np.bincount(inverse, minlength=len(keys)).astype(float)
    o_u = np.bincount(inverse, weights=np.asarray(clicked, dtype=float), minlength=len(keys))
    return clusters_to_blocks(keys[:, 0], n_u, o_u, block_s)


def clusters_to_blocks(
    block: np.ndarray, n_u: np.ndarray, o_u: np.ndarray, block_s: float
) -> BlockStats:
    """BlockStats from per-(block, user) counts: `block` is each cluster's block index."""
    blocks, inv = np.unique(np.asarray(block, dtype=np.int64), return_inverse=True)
    inv = inv.reshape(-1)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(inv, weights=values, minlength=len(blocks))

    return BlockStats(
        blocks.astype(float) * block_s,
        total(n_u),
        total(o_u),
        total(o_u * o_u),
        total(o_u * n_u),
        total(n_u * n_u),
    )


@dataclass(frozen=True)
class Reference:
    """What the monitored blocks are compared with."""

    level: float  # CTR at shape 1.0
    design_effect: float  # clustered variance / binomial variance, at least 1
    impressions: int
    clicked: int

    def expected_ctr(self, shape: np.ndarray) -> np.ndarray:
        return np.clip(self.level * shape, 1e-9, 1 - 1e-9)


def reference(
    stats: BlockStats, shape: DiurnalShape, block_s: float, batch_s: float = HOUR_S
) -> Reference:
    """The model's level and variance inflation from its reference blocks.

    The inflation is the larger of two estimates of how far the clicked counts vary beyond a
    binomial's: user clusters within a block (several impressions of one user), and batch
    means over `batch_s` (the same users returning in the next block, and whatever the hour of
    day shape misses), the latter only with at least 24 batches to estimate it from.
    """
    weight = shape.at(stats.start + block_s / 2)
    exposure = float((stats.impressions * weight).sum())
    clicked = float(stats.clicked.sum())
    impressions = int(stats.impressions.sum())
    if exposure <= 0 or clicked <= 0:
        return Reference(0.0, 1.0, impressions, int(clicked))
    level = clicked / exposure
    p = np.clip(level * weight, 1e-9, 1 - 1e-9)
    binomial = stats.impressions * p * (1 - p)
    clustered = stats.s_oo - 2 * p * stats.s_on + p * p * stats.s_nn
    effect = float(clustered.sum() / binomial.sum()) if binomial.sum() > 0 else 1.0
    batch = np.floor(stats.start / batch_s).astype(np.int64)
    _, inv = np.unique(batch, return_inverse=True)
    if inv.max(initial=-1) + 1 >= 24:
        resid = np.bincount(inv, weights=stats.clicked - stats.impressions * p)
        var = np.bincount(inv, weights=binomial)
        effect = max(effect, float((resid**2).sum() / var.sum()))
    return Reference(level, max(1.0, effect), impressions, int(clicked))


def information(
    stats: BlockStats, ref: Reference, shape: DiurnalShape, drop: float, block_s: float
) -> float:
    """The 90th percentile, over blocks with impressions, of the LLR's variance (drop x E)² / V.

    A high percentile rather than the mean: Siegmund's run length shrinks as I grows, so the
    busy hours, not the average one, set the false-alarm rate.
    """
    busy = stats.impressions > 0
    if not busy.any() or ref.level <= 0:
        return 0.0
    p = ref.expected_ctr(shape.at(stats.start[busy] + block_s / 2))
    expected = stats.impressions[busy] * p
    var = ref.design_effect * expected * (1 - p)
    return float(np.percentile((drop * expected) ** 2 / var, 90))


@dataclass(frozen=True)
class CusumPath:
    """The CUSUM over the monitored blocks, with its crossings (the statistic resets at each)."""

    path: np.ndarray  # statistic after each block
    crossings: np.ndarray  # indices of blocks at which it crossed the threshold
    starts: np.ndarray  # for each crossing, the first block of its excursion above 0
    expected: np.ndarray  # expected clicked impressions per block under "no drop"
    run_start: int  # first block of the current excursion above 0 (len(path) when at 0)

    @property
    def statistic(self) -> float:
        return float(self.path[-1]) if len(self.path) else 0.0


def cusum(
    stats: BlockStats,
    ref: Reference,
    shape: DiurnalShape,
    drop: float,
    threshold: float,
    block_s: float,
) -> CusumPath:
    """Page's CUSUM for "CTR fell by `drop` (relative)" against the reference, with resets.

    Each block contributes the Gaussian log-likelihood ratio of its clicked count O under mean
    (1 - drop) E against mean E, variance V = design effect x E (1 - p): (dE/V)(E - O) - (dE)²/2V.
    Blocks with no impressions contribute 0.
    """
    if not 0 < drop < 1:
        raise MonitorError(f"the CUSUM needs a relative drop in (0, 1), got {drop}")
    p = ref.expected_ctr(shape.at(stats.start + block_s / 2))
    expected = stats.impressions * p
    var = ref.design_effect * stats.impressions * p * (1 - p)
    shift = drop * expected
    safe = np.where(var > 0, var, 1.0)
    step = np.where(var > 0, shift / safe * (expected - stats.clicked) - shift**2 / (2 * safe), 0.0)
    path = np.empty(len(step))
    crossings: list[int] = []
    starts: list[int] = []
    s, run_start = 0.0, 0
    for i, x in enumerate(step):
        if s <= 0:
            run_start = i
        s = max(0.0, s + float(x))
        if s >= threshold:
            crossings.append(i)
            starts.append(run_start)
            path[i] = s
            s = 0.0
            continue
        path[i] = s
    if s <= 0:
        run_start = len(step)
    return CusumPath(
        path,
        np.asarray(crossings, dtype=np.int64),
        np.asarray(starts, dtype=np.int64),
        expected,
        run_start,
    )


def span_start(cur_hi: float, restart_s: float, earliest: float | None = None) -> float:
    """Start (epoch s) of the monitored span a check ending at `cur_hi` recomputes the CUSUM on.

    The span starts on a fixed grid (multiples of `restart_s`), one to two restarts back, so
    that every check in the same grid cell computes the same path from the same reference,
    whenever and however often it runs; `earliest` (the end of a model's own reference window)
    moves it later.
    """
    start = math.floor(cur_hi / restart_s) * restart_s - restart_s
    return max(start, earliest) if earliest is not None else start
