"""Drop detection: false alarms per 30 days and detection delays, on realistic simulated traffic.

The traffic is not i.i.d. impressions at one CTR: CTR and volume follow the hour of day, users
differ in how much they click (a persistent per-user factor) and come in sessions of several
impressions (a per-session factor), so impressions are clustered by user and hour. Two levels:
  demo    the demo's traffic on the monitor's clock: 30 impressions/s (108,000/h), ~60% of
          lists clicked, 800 users
  10k     10,000 impressions/hour at 5% CTR, 30,000 users
For each level, the detector (recloop.monitoring.sequential: the same functions engagement_drop
runs) is evaluated at checks every 60 s and every 15 min:
  - no drop: `--fa-runs` runs of 30 days after `--history-days` of history; false alarms are
    distinct CUSUM crossings any check saw (the loop logs an alarm when it starts firing);
  - drops of 10/20/30% at a uniformly random time on the day after the history: delay from the
    drop to the first check that fires on a crossing at or after it (censored at 12 h).
Baseline measured in the same run: the former detector, a one-sided z-test of the last hour
against the 6 h before it at alpha 0.01 with a 10% minimum drop, checked at the same times.

Usage: flock /tmp/recloop-bench.lock .venv/bin/python bench/monitor_drop.py [--fa-runs 4]
The last line is one JSON object; `fa_ratio` = the z-test's false alarms / the CUSUM's.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
from scipy.stats import norm

from recloop.monitoring.detectors import MonitorConfig
from recloop.monitoring.sequential import (
    HOUR_S,
    BlockStats,
    clusters_to_blocks,
    cusum,
    fit_shape,
    information,
    reference,
    span_start,
    threshold_for,
)

DAY = 86_400.0
MINUTE = 60.0


@dataclass(frozen=True)
class Level:
    name: str
    per_hour: float
    ctr: float
    users: int
    views: float = 5.0  # impressions per session (1 + Poisson)
    ctr_amplitude: float = 0.3  # CTR by hour of day: 1 + a cos(2 pi (h - 21) / 24)
    volume_amplitude: float = 0.0  # impressions by hour of day, same form, peak at 20 h
    user_shape: float = 2.0  # per-user CTR factor ~ Gamma(k, 1/k)
    session_shape: float = 3.0  # per-session CTR factor ~ Gamma(k, 1/k)


LEVELS = {
    "demo": Level("demo", 108_000.0, 0.6, 800),
    "10k": Level("10k", 10_000.0, 0.05, 30_000),
}


@dataclass
class Traffic:
    """Aggregates of one simulated run: minute counts and per-(block, user) clusters."""

    minute_n: np.ndarray
    minute_c: np.ndarray
    cluster_block: np.ndarray
    cluster_n: np.ndarray
    cluster_c: np.ndarray


def simulate(
    level: Level, days: float, block_s: float, rng: np.random.Generator, drop_at: float, drop: float
) -> Traffic:
    activity = rng.lognormal(0.0, 1.0, level.users)
    activity /= activity.sum()
    user_factor = rng.gamma(level.user_shape, 1 / level.user_shape, level.users)
    minutes = int(days * 1440)
    hours = (np.arange(minutes) / 60.0) % 24
    volume = 1 + level.volume_amplitude * np.cos(2 * np.pi * (hours - 20) / 24)
    sessions_per_min = level.per_hour / 60 / level.views * volume
    n_sessions = rng.poisson(sessions_per_min)
    start = np.repeat(np.arange(minutes), n_sessions) * MINUTE + rng.uniform(
        0, MINUTE, n_sessions.sum()
    )
    user = rng.choice(level.users, len(start), p=activity)
    views = 1 + rng.poisson(level.views - 1, len(start))
    h = (start / HOUR_S) % 24
    p = level.ctr * (1 + level.ctr_amplitude * np.cos(2 * np.pi * (h - 21) / 24))
    p = p * user_factor[user] * rng.gamma(level.session_shape, 1 / level.session_shape, len(start))
    p = np.where(start >= drop_at, p * (1 - drop), p)
    clicked = rng.binomial(views, np.clip(p, 0, 0.95))
    minute = (start // MINUTE).astype(np.int64)
    minute_n = np.bincount(minute, weights=views, minlength=minutes)
    minute_c = np.bincount(minute, weights=clicked, minlength=minutes)
    block = (start // block_s).astype(np.int64)
    key = block * level.users + user
    keys, inv = np.unique(key, return_inverse=True)
    return Traffic(
        minute_n,
        minute_c,
        keys // level.users,
        np.bincount(inv, weights=views).astype(float),
        np.bincount(inv, weights=clicked).astype(float),
    )


def cusum_alarms(
    traffic: Traffic,
    blocks: BlockStats,
    config: MonitorConfig,
    checks: np.ndarray,
    promoted: float | None = None,
) -> dict[float, float]:
    """Crossing time (end of its block, s) -> first check time that saw it, for every crossing.

    Mirrors engagement_drop (with `promoted`: the model went live then and its reference starts
    there, as with the loop's default baseline_from_promotion): each check ends its data one
    attribution window before it, recomputes the CUSUM from `span_start` with the reference
    window just before that start and the shape of the `seasonality` before it, and fires
    when a crossing lies within the last `current` window.
    """
    block_s = config.block.total_seconds()
    restart_s = config.restart_seconds
    h = threshold_for(config.false_alarms_per_30_days, block_s)
    att = config.attribution.total_seconds()
    cur_s = config.current.total_seconds()
    seen: dict[float, float] = {}
    spans: dict[float, tuple[np.ndarray, np.ndarray] | None] = {}
    for t in checks:
        cur_hi = math.floor((t - att) / block_s) * block_s
        earliest = None if promoted is None else promoted + config.baseline.total_seconds()
        lo = span_start(cur_hi, restart_s, earliest)
        if lo not in spans:
            spans[lo] = _span(traffic, blocks, config, lo, h, promoted)
        span = spans[lo]
        if span is None:
            continue
        crossing_ends, volume_ok_from = span
        fresh = crossing_ends[(crossing_ends <= cur_hi) & (crossing_ends > cur_hi - cur_s)]
        if cur_hi < volume_ok_from:
            continue
        for end in fresh:
            seen.setdefault(float(end), float(t))
    return seen


def _span(
    traffic: Traffic,
    blocks: BlockStats,
    config: MonitorConfig,
    lo: float,
    h: float,
    promoted: float | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    block_s = config.block.total_seconds()
    base_lo = lo - config.baseline.total_seconds()
    season_lo = lo - config.seasonality.total_seconds()
    if base_lo < 0:
        return None
    ref_lo = max(season_lo, 0.0, promoted or 0.0)
    ref_blocks = blocks.select((blocks.start >= ref_lo) & (blocks.start < lo))
    if ref_blocks.impressions.sum() < config.min_impressions:
        return None
    hour_lo, hour_hi = int(max(season_lo, 0) // HOUR_S), int(lo // HOUR_S)
    mins_n = traffic.minute_n[hour_lo * 60 : hour_hi * 60].reshape(-1, 60).sum(axis=1)
    mins_c = traffic.minute_c[hour_lo * 60 : hour_hi * 60].reshape(-1, 60).sum(axis=1)
    shape = fit_shape(np.arange(hour_lo, hour_hi) * HOUR_S, mins_n, mins_c, config.harmonics)
    ref = reference(ref_blocks, shape, block_s)
    if config.calibrate:
        h = threshold_for(
            config.false_alarms_per_30_days,
            block_s,
            information(ref_blocks, ref, shape, config.min_relative_drop, block_s),
        )
    hi = lo + 2 * config.restart_seconds
    mon = blocks.select((blocks.start >= lo) & (blocks.start < hi))
    path = cusum(mon, ref, shape, config.min_relative_drop, h, block_s)
    ends = mon.start + block_s
    cum = np.cumsum(mon.impressions)
    ok = np.flatnonzero(cum >= config.min_impressions)
    volume_ok_from = float(ends[ok[0]]) if len(ok) else math.inf
    return ends[path.crossings], np.float64(volume_ok_from)


def ztest_alarms(traffic: Traffic, checks: np.ndarray, config: MonitorConfig) -> list[float]:
    """Check times at which the former detector started firing (one per episode)."""
    n = np.concatenate([[0.0], np.cumsum(traffic.minute_n)])
    c = np.concatenate([[0.0], np.cumsum(traffic.minute_c)])
    cur_hi = ((checks - config.attribution.total_seconds()) // MINUTE).astype(np.int64)
    cur_lo = cur_hi - 60
    base_lo = cur_lo - 360
    valid = base_lo >= 0
    cur_hi, cur_lo, base_lo = cur_hi[valid], cur_lo[valid], base_lo[valid]
    n1, c1 = n[cur_hi] - n[cur_lo], c[cur_hi] - c[cur_lo]
    n2, c2 = n[cur_lo] - n[base_lo], c[cur_lo] - c[base_lo]
    pooled = (c1 + c2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (c1 / n1 - c2 / n2) / np.where(se > 0, se, 1)
    relative = 1 - (c1 / n1) / (c2 / n2)
    firing = (norm.cdf(z) < 0.01) & (relative >= 0.10) & (np.minimum(n1, n2) >= 300)
    starts = firing & ~np.concatenate([[False], firing[:-1]])
    return list(checks[valid][starts])


def run_level(level: Level, args: argparse.Namespace, config: MonitorConfig) -> dict[str, object]:
    block_s = config.block.total_seconds()
    history = args.history_days * DAY
    out: dict[str, object] = {"impressions_per_hour": level.per_hour, "ctr": level.ctr}
    intervals = {"60s": 60.0, "15min": 900.0}
    # --promoted: the model goes live when the history ends (its reference starts there).
    promoted = history if args.promoted else None
    # No drop: false alarms over 30 days.
    fa: dict[str, list[int]] = {k: [] for k in intervals}
    fa_z: dict[str, list[int]] = {k: [] for k in intervals}
    for run in range(args.fa_runs):
        rng = np.random.default_rng(1000 + run)
        traffic = simulate(level, args.history_days + 30, block_s, rng, math.inf, 0.0)
        blocks = clusters_to_blocks(
            traffic.cluster_block, traffic.cluster_n, traffic.cluster_c, block_s
        )
        for name, every in intervals.items():
            checks = np.arange(history, history + 30 * DAY, every) + rng.uniform(0, every)
            fa[name].append(len(cusum_alarms(traffic, blocks, config, checks, promoted)))
            fa_z[name].append(len(ztest_alarms(traffic, checks, config)))
    for name in intervals:
        out[f"false_alarms_per_30d_{name}"] = round(float(np.mean(fa[name])), 3)
        out[f"false_alarms_per_30d_{name}_runs"] = fa[name]
        out[f"ztest_false_alarms_per_30d_{name}"] = round(float(np.mean(fa_z[name])), 1)
    # Drops: delays.
    for drop in args.drops:
        delays: dict[str, list[float]] = {k: [] for k in intervals}
        for run in range(args.drop_runs):
            rng = np.random.default_rng(5000 + run + int(drop * 1000))
            # With --promoted, after the model's first `baseline` (its reference needs one).
            first = config.baseline.total_seconds() if args.promoted else 0.0
            at = history + rng.uniform(first, DAY)
            traffic = simulate(level, args.history_days + 1.6, block_s, rng, at, drop)
            blocks = clusters_to_blocks(
                traffic.cluster_block, traffic.cluster_n, traffic.cluster_c, block_s
            )
            for name, every in intervals.items():
                # The schedule's phase is not the blocks': a Lambda's cron starts when it starts.
                phase = rng.uniform(0, every)
                checks = np.arange(math.ceil(at / every) * every + phase, at + 12 * HOUR_S, every)
                seen = cusum_alarms(traffic, blocks, config, checks, promoted)
                hits = [t for end, t in seen.items() if end > at - block_s]
                delays[name].append(min(hits) - at if hits else math.inf)
        for name, values in delays.items():
            d = np.asarray(values) / 60.0
            found = d[np.isfinite(d)]
            key = f"drop{int(drop * 100)}_{name}"
            out[f"{key}_within_2h"] = round(float(np.mean(d <= 120)), 3)
            out[f"{key}_delay_min_p50_p90"] = (
                [round(float(np.percentile(found, q)), 1) for q in (50, 90)] if len(found) else None
            )
            out[f"{key}_missed_12h"] = int(np.sum(~np.isfinite(d)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--fa-runs", type=int, default=4)
    parser.add_argument("--drop-runs", type=int, default=40)
    parser.add_argument("--drops", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--history-days", type=float, default=7.0)
    parser.add_argument("--block-minutes", type=float, default=None)
    parser.add_argument("--min-relative-drop", type=float, default=None)
    parser.add_argument("--promoted", action="store_true", help="reference from promotion")
    parser.add_argument(
        "--volume-amplitude",
        type=float,
        default=0.0,
        help="impressions by hour of day: 1 + a cos(...) (0: the level's rate every hour)",
    )
    args = parser.parse_args()
    config = MonitorConfig()
    if args.block_minutes:
        config = replace(config, block=timedelta(minutes=args.block_minutes))
    if args.min_relative_drop:
        config = replace(config, min_relative_drop=args.min_relative_drop)
    t0 = time.perf_counter()
    levels = {n: replace(LEVELS[n], volume_amplitude=args.volume_amplitude) for n in args.levels}
    results = {name: run_level(level, args, config) for name, level in levels.items()}
    for name, res in results.items():
        print(f"== {name}")
        for key, value in res.items():
            print(f"  {key}: {value}")
    cusum_fa = max(
        float(res[f"false_alarms_per_30d_{i}"])  # type: ignore[arg-type]
        for res in results.values()
        for i in ("60s", "15min")
    )
    z_fa = max(
        float(res[f"ztest_false_alarms_per_30d_{i}"])  # type: ignore[arg-type]
        for res in results.values()
        for i in ("60s", "15min")
    )
    summary = {
        "config": config.to_dict(),
        "fa_runs": args.fa_runs,
        "drop_runs": args.drop_runs,
        "levels": results,
        "worst_false_alarms_per_30d": cusum_fa,
        "worst_ztest_false_alarms_per_30d": z_fa,
        "fa_ratio": round(z_fa / max(cusum_fa, 1 / (30 * args.fa_runs)), 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
