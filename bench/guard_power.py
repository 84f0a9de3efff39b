"""The concurrent guard's power: impressions needed to roll back a 10% CTR loss 80% of the time.

Simulates the guard window's two arms: a hashed share of users on the previous champion, the rest
on the new one, users who differ in how much they click (a per-user factor) and come in
sessions of several impressions. The loop's own test (recloop.loop.guard.judge, a mixture SPRT
with user-clustered variances) is checked after every batch of impressions, as the loop checks
every pass. Two levels: 10k (5% CTR, 30,000 users, 10,000 impressions/hour) and the demo's
(60% CTR, 800 users, 108,000/hour). Reported per level and held-back share:
  - n80: total impressions (both arms) by which 80% of runs with a `--loss` relative loss on the
    new champion were rolled back, and the hours that is at the level's traffic;
  - the share of those runs rolled back within the guard window (`--window-hours`), and of runs
    with a `--broken` loss (a broken model);
  - false rollbacks: share of runs with equal CTR rolled back within the horizon
    (`--horizon-factor` x the z-test's n);
  - baseline in the same run: the fixed-sample two-proportion z-test's n for 80% power at the
    same alpha (one look, known variance), so `ratio` = n80 / that n is the price of looking
    at every pass.

Usage: flock /tmp/recloop-bench.lock .venv/bin/python bench/guard_power.py [--runs 200]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import timedelta

import numpy as np
from scipy.stats import norm

from recloop.loop.guard import ArmStats, GuardConfig, Verdict, judge


def arm_stats(n: np.ndarray, o: np.ndarray) -> ArmStats:
    seen = n > 0
    n, o = n[seen], o[seen]
    return ArmStats(int(n.sum()), int(o.sum()), float((o * o).sum()), float((o * n).sum()),
                    float((n * n).sum()), int(seen.sum()))  # fmt: skip


def first_rollback(
    rng: np.random.Generator,
    ctr: float,
    loss: float,
    share: float,
    users: int,
    horizon: int,
    batch: int,
    config: GuardConfig,
    views: float = 4.0,
) -> float:
    """Total impressions at the first rollback (inf if none by `horizon`)."""
    factor = rng.gamma(2.0, 0.5, users)
    held = rng.random(users) < share  # the hash: a fixed share of users, each in one arm
    n = np.zeros((2, users))
    o = np.zeros((2, users))
    total = 0
    while total < horizon:
        sessions = int(batch / views)
        who = rng.integers(0, users, sessions)
        length = 1 + rng.poisson(views - 1, sessions)
        arm = held[who].astype(int)  # 1: previous champion, 0: new champion
        # The loss after the clip: every user of the new arm clicks `loss` less, exactly.
        p = np.clip(ctr * factor[who], 0, 0.95) * np.where(arm == 0, 1 - loss, 1.0)
        clicked = rng.binomial(length, p)
        for a in (0, 1):
            mine = arm == a
            n[a] += np.bincount(who[mine], weights=length[mine], minlength=users)
            o[a] += np.bincount(who[mine], weights=clicked[mine], minlength=users)
        total += int(length.sum())
        verdict = judge("new", "old", arm_stats(n[0], o[0]), arm_stats(n[1], o[1]),
                        timedelta(0), config)  # fmt: skip
        if verdict.verdict is Verdict.ROLLBACK:
            return float(total)
    return math.inf


def fixed_sample_n(ctr: float, loss: float, share: float, alpha: float, power: float) -> float:
    """One-look one-sided z-test: total n for `power` against the loss (binomial variance)."""
    p1, p0 = ctr * (1 - loss), ctr
    var = p1 * (1 - p1) / (1 - share) + p0 * (1 - p0) / share
    z = norm.ppf(1 - alpha) + norm.ppf(power)
    return z * z * var / (p0 - p1) ** 2


LEVELS = {
    # name: (CTR, users, impressions per hour)
    "10k": (0.05, 30_000, 10_000.0),
    "demo": (0.60, 800, 108_000.0),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--loss", type=float, default=0.10)
    parser.add_argument("--broken", type=float, default=0.30, help="a large loss, for contrast")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.10, 0.15, 0.20])
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--window-hours", type=float, default=2.0)
    parser.add_argument(
        "--horizon-factor", type=float, default=6.0, help="runs stop at this x the z-test's n"
    )
    args = parser.parse_args()
    config = GuardConfig(alpha=args.alpha, min_relative_loss=args.loss, min_impressions=300)
    t0 = time.perf_counter()
    rows = []
    for name in args.levels:
        ctr, users, per_hour = LEVELS[name]
        window = int(per_hour * args.window_hours)
        for share in args.shares:
            fixed = fixed_sample_n(ctr, args.loss, share, args.alpha, 0.8)
            horizon = int(max(fixed * args.horizon_factor, window))
            batch = max(500, int(min(fixed, window) / 60))
            rng = np.random.default_rng(int(ctr * 1000) + int(share * 100))

            def runs(loss: float, until: int) -> np.ndarray:
                return np.array([
                    first_rollback(rng, ctr, loss, share, users, until, batch, config)  # noqa: B023
                    for _ in range(args.runs)
                ])  # fmt: skip

            hits = runs(args.loss, horizon)
            broken = runs(args.broken, window)
            false = runs(0.0, horizon)
            n80 = float(np.percentile(hits, 80))
            row = {
                "level": name,
                "ctr": ctr,
                "users": users,
                "share": share,
                "n80": round(n80) if math.isfinite(n80) else None,
                "hours": round(n80 / per_hour, 1) if math.isfinite(n80) else None,
                "power_in_window": round(float((hits <= window).mean()), 3),
                "broken_power_in_window": round(float((broken <= window).mean()), 3),
                "fixed_sample_n": round(fixed),
                "ratio": round(n80 / fixed, 2) if math.isfinite(n80) else None,
                "false_rollbacks": round(float(np.isfinite(false).mean()), 3),
                "horizon": horizon,
            }
            rows.append(row)
            print(row, flush=True)
    print(json.dumps({"loss": args.loss, "broken": args.broken, "alpha": args.alpha,
                      "runs": args.runs, "window_hours": args.window_hours, "rows": rows,
                      "seconds": round(time.perf_counter() - t0, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
