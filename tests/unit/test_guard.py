"""The guard's sequential test on two arms: false rollbacks stay under alpha however often it
looks, a real loss is rolled back, and no side-by-side traffic means no verdict."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from recloop.loop.guard import ArmStats, GuardConfig, Verdict, judge, log_mixture_ratio

CONFIG = GuardConfig(window=timedelta(hours=2), min_impressions=300, alpha=0.05)
OPEN = timedelta(minutes=30)


def _arm(rng: np.random.Generator, users: int, per_user: int, ctr: float) -> ArmStats:
    """`users` users with `per_user` impressions each and their own CTR around `ctr`."""
    p = np.clip(ctr * rng.gamma(2.0, 0.5, users), 0, 0.95)
    o = rng.binomial(per_user, p).astype(float)
    n = np.full(users, float(per_user))
    return ArmStats(int(n.sum()), int(o.sum()), float((o * o).sum()), float((o * n).sum()),
                    float((n * n).sum()), users)  # fmt: skip


def test_looking_thirty_times_keeps_false_rollbacks_under_alpha() -> None:
    rng = np.random.default_rng(0)
    rolled = 0
    for _ in range(100):
        ours_o = np.zeros(400)
        theirs_o = np.zeros(100)
        factor_ours = rng.gamma(2.0, 0.5, 400)
        factor_theirs = rng.gamma(2.0, 0.5, 100)
        for look in range(1, 31):  # the same users come back: 30 looks at growing data
            ours_o += rng.binomial(4, np.clip(0.1 * factor_ours, 0, 0.95))
            theirs_o += rng.binomial(4, np.clip(0.1 * factor_theirs, 0, 0.95))
            n_ours, n_theirs = np.full(400, 4.0 * look), np.full(100, 4.0 * look)

            def stats(o: np.ndarray, n: np.ndarray) -> ArmStats:
                return ArmStats(int(n.sum()), int(o.sum()), float((o * o).sum()),
                                float((o * n).sum()), float((n * n).sum()), len(n))  # fmt: skip

            verdict = judge("2", "1", stats(ours_o, n_ours), stats(theirs_o, n_theirs), OPEN,
                            CONFIG)  # fmt: skip
            if verdict.verdict is Verdict.ROLLBACK:
                rolled += 1
                break
    # alpha 0.05 over 100 runs: 5 expected at most (P(more than 11) < 0.01 at 5%).
    assert rolled <= 11


def test_a_large_loss_side_by_side_is_rolled_back_with_its_evidence() -> None:
    rng = np.random.default_rng(1)
    ours, theirs = _arm(rng, 1500, 4, 0.12), _arm(rng, 400, 4, 0.20)
    verdict = judge("2", "1", ours, theirs, OPEN, CONFIG)
    assert verdict.verdict is Verdict.ROLLBACK, verdict.detail
    ev = verdict.evidence
    assert ev["test"] == "msprt" and ev["always_valid_p"] < 0.05
    assert ev["relative_loss"] == pytest.approx(0.4, abs=0.1)
    assert "side by side" in verdict.detail


def test_a_better_champion_is_never_rolled_back_and_passes_at_the_end() -> None:
    rng = np.random.default_rng(2)
    ours, theirs = _arm(rng, 1500, 4, 0.25), _arm(rng, 400, 4, 0.15)
    assert judge("2", "1", ours, theirs, OPEN, CONFIG).verdict is Verdict.WATCH
    closed = judge("2", "1", ours, theirs, timedelta(hours=3), CONFIG)
    assert closed.verdict is Verdict.PASSED


def test_without_a_held_back_arm_there_is_no_verdict() -> None:
    rng = np.random.default_rng(3)
    closed = judge("2", "1", _arm(rng, 500, 4, 0.1), ArmStats(), timedelta(hours=3), CONFIG)
    assert closed.verdict is Verdict.NO_VERDICT and "HOLDBACK_SHARE" in closed.detail


def test_arm_stats_cluster_by_user_and_the_mixture_matches_its_formula() -> None:
    frame = pd.DataFrame(
        {"actor_id": ["a", "a", "a", "b", None], "rec_id": ["1", "2", "3", "4", "5"],
         "clicks": [1, 1, 0, 0, 2]}
    )  # fmt: skip
    arm = ArmStats.of(frame)
    assert (arm.impressions, arm.clicked, arm.users) == (5, 3, 3)
    assert (arm.s_oo, arm.s_on, arm.s_nn) == (5.0, 7.0, 11.0)  # a: o=2 n=3; b: 0, 1; anon: 1, 1
    v, tau, d = 0.0004, 0.01, 0.03
    expected = 0.5 * math.log(v / (v + tau**2)) + d**2 * tau**2 / (2 * v * (v + tau**2))
    assert log_mixture_ratio(d, v, tau) == pytest.approx(expected)
