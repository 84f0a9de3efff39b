"""The guard window: is a freshly promoted champion losing to the one it replaced, side by side?

During the window serving keeps a deterministic, user-hashed share of traffic on the previous
champion (recloop.serving.hotswap.Holdback), so both arms serve at the same hours to comparable
users, and each impression carries the version that served it. Two parts:
- `guard_counts`: each arm's impressions since the approval, with user-cluster sums (a user's
  impressions are not independent trials; the hash puts each user in one arm);
- `judge`: a mixture sequential probability ratio test (mSPRT) of "the new champion's CTR is
  lower" on the difference of the two arms' CTRs: its false-rollback probability stays below
  `alpha` however often the loop checks (Ville's inequality), so the loop may look every pass.
The controller (recloop.loop.controller) decides what a verdict does (reject the new champion,
close the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from recloop.lake import Lake
from recloop.monitoring import Engagement, MonitorConfig

GUARD = "guard_window"  # the trigger of every decision the guard takes


@dataclass(frozen=True)
class GuardConfig:
    """When a freshly promoted champion is rolled back."""

    window: timedelta = timedelta(hours=2)  # how long after approval it is watched
    min_impressions: int = 300  # in each arm before a verdict
    alpha: float = 0.01  # false-rollback probability, over the whole window
    # The loss the test is tuned to (the mixture's scale): smaller losses need more traffic.
    min_relative_loss: float = 0.10

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window.total_seconds(),
            "min_impressions": self.min_impressions,
            "alpha": self.alpha,
            "min_relative_loss": self.min_relative_loss,
        }


@dataclass(frozen=True)
class ArmStats:
    """One arm's impressions and clicked impressions, with sums over its users."""

    impressions: int = 0
    clicked: int = 0
    s_oo: float = 0.0  # sum over users of clicked²
    s_on: float = 0.0  # clicked x impressions
    s_nn: float = 0.0  # impressions²
    users: int = 0

    @property
    def ctr(self) -> float:
        return self.clicked / self.impressions if self.impressions else 0.0

    def variance(self) -> float:
        """Variance of the arm's CTR with users as clusters (a ratio estimator's)."""
        if self.impressions == 0:
            return math.inf
        p = self.ctr
        return max(self.s_oo - 2 * p * self.s_on + p * p * self.s_nn, 0.0) / self.impressions**2

    @classmethod
    def of(cls, frame: pd.DataFrame) -> ArmStats:
        """From engagement rows (actor_id, clicks); anonymous rows are their own cluster."""
        if frame.empty:
            return cls()
        actor = frame["actor_id"].where(frame["actor_id"].notna(), frame["rec_id"])
        codes, _ = pd.factorize(actor)
        n = np.bincount(codes).astype(float)
        o = np.bincount(codes, weights=(frame["clicks"] > 0).to_numpy(dtype=float))
        return cls(
            len(frame),
            int(o.sum()),
            float((o * o).sum()),
            float((o * n).sum()),
            float((n * n).sum()),
            len(n),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "impressions": self.impressions,
            "clicked": self.clicked,
            "users": self.users,
            "ctr": round(self.ctr, 6),
        }


def log_mixture_ratio(difference: float, variance: float, scale: float) -> float:
    """Log of the normal-mixture likelihood ratio for a mean `difference` with `variance`,
    mixing N(0, scale²) over the alternatives (Robbins; Johari et al.'s always-valid test)."""
    total = variance + scale * scale
    return 0.5 * math.log(variance / total) + difference**2 * scale**2 / (2 * variance * total)


class Verdict(StrEnum):
    WATCH = "watch"  # keep watching: no significant loss yet and the window is open
    ROLLBACK = "rollback"  # a significant loss: the previous champion comes back
    PASSED = "passed"  # the window closed with enough traffic and no significant loss
    NO_VERDICT = "no_verdict"  # the window closed with too little traffic to tell


@dataclass(frozen=True)
class Judgement:
    """A verdict with the figures behind it (they go into the decision's evidence)."""

    verdict: Verdict
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


def judge(
    champion: str,
    previous: str,
    ours: ArmStats,
    theirs: ArmStats,
    elapsed: timedelta,
    config: GuardConfig,
) -> Judgement:
    """The verdict on `champion` (arm `ours`) against `previous` (arm `theirs`), both since the
    approval, after `elapsed` of the window."""
    evidence: dict[str, Any] = {"test": "msprt", "alpha": config.alpha}
    enough = min(ours.impressions, theirs.impressions) >= config.min_impressions
    if enough and theirs.ctr > 0:
        difference = theirs.ctr - ours.ctr  # > 0: the new champion is worse
        variance = max(ours.variance() + theirs.variance(), 1e-12)
        scale = config.min_relative_loss * theirs.ctr
        log_lr = log_mixture_ratio(difference, variance, scale)
        loss = difference / theirs.ctr
        evidence.update(
            relative_loss=round(loss, 4),
            difference=round(difference, 6),
            std_error=round(math.sqrt(variance), 6),
            log_likelihood_ratio=round(log_lr, 4),
            threshold=round(math.log(1 / config.alpha), 4),
            always_valid_p=min(1.0, math.exp(-log_lr)),
        )
        if difference > 0 and log_lr >= math.log(1 / config.alpha):
            detail = (
                f"rolled back: side by side since its approval, v{champion} CTR {ours.ctr:.2%} "
                f"({ours.impressions} impressions) against v{previous}'s {theirs.ctr:.2%} "
                f"({theirs.impressions}), {loss:+.1%} loss, always-valid p="
                f"{evidence['always_valid_p']:.2g}"
            )
            return Judgement(Verdict.ROLLBACK, detail, evidence)
    if elapsed <= config.window:
        return Judgement(Verdict.WATCH, "guard window open", evidence)
    if enough:
        detail = (
            f"guard passed: side by side v{champion} CTR {ours.ctr:.2%} vs v{previous} "
            f"{theirs.ctr:.2%}, no significant loss"
        )
        return Judgement(Verdict.PASSED, detail, evidence)
    detail = (
        f"guard closed without a verdict: {ours.impressions} / {theirs.impressions} "
        f"impressions in the two arms, need {config.min_impressions} each"
        + (
            "; the previous champion served none: is RECLOOP_GUARD_HOLDBACK_SHARE 0?"
            if theirs.impressions == 0
            else ""
        )
    )
    return Judgement(Verdict.NO_VERDICT, detail, evidence)


def guard_counts(
    lake: Lake,
    monitor: MonitorConfig,
    champion: str,
    previous: str,
    promoted_at: datetime,
    now: datetime,
) -> tuple[ArmStats, ArmStats, dict[str, Any]]:
    """Each arm's impressions since the approval whose clicks had their full chance."""
    hi = max(now - monitor.attribution, promoted_at)
    engagement = Engagement.from_lake(
        lake, promoted_at, max(hi, promoted_at + timedelta(seconds=1)), monitor.attribution
    )
    frame = engagement.window(promoted_at, hi)
    ours = ArmStats.of(frame[frame["model_version"] == champion])
    theirs = ArmStats.of(frame[frame["model_version"] == previous])
    return ours, theirs, {"arms_window": [promoted_at.isoformat(), hi.isoformat()]}
