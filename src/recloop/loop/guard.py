"""The guard window: is a freshly promoted champion losing online to the one it replaced?

Two parts with one reason to change each:
- `guard_counts`: what is compared, read from the lake: the new champion's impressions and
  clicks since its approval, the previous champion's just before it (or since the drop that
  triggered the retrain);
- `judge`: the statistics that turn those counts into a verdict (today a one-sided
  two-proportion z-test with minimum volumes and a minimum relative loss).
The controller (recloop.loop.controller) decides what a verdict does (reject the new champion,
close the window); only `judge` knows how the verdict is reached, so another test can replace it
without touching the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from recloop.lake import Lake
from recloop.monitoring import Counts, Engagement, MonitorConfig, two_proportion_ztest

GUARD = "guard_window"  # the trigger of every decision the guard takes


@dataclass(frozen=True)
class GuardConfig:
    """When a freshly promoted champion is rolled back."""

    window: timedelta = timedelta(hours=2)  # how long after approval it is watched
    min_impressions: int = 300  # on each side before a verdict
    alpha: float = 0.01
    min_relative_loss: float = 0.10  # smaller losses are noise worth keeping the model for
    reference: timedelta = timedelta(hours=1)  # the previous champion's window before approval

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window.total_seconds(),
            "min_impressions": self.min_impressions,
            "alpha": self.alpha,
            "min_relative_loss": self.min_relative_loss,
            "reference_seconds": self.reference.total_seconds(),
        }


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
    ours: Counts,
    theirs: Counts,
    elapsed: timedelta,
    config: GuardConfig,
) -> Judgement:
    """The verdict on `champion` (counts `ours`) against `previous` (`theirs`) after `elapsed`."""
    evidence: dict[str, Any] = {}
    enough = min(ours.impressions, theirs.impressions) >= config.min_impressions
    if enough:
        test = two_proportion_ztest(ours, theirs)
        loss = 1 - ours.ctr / theirs.ctr if theirs.ctr > 0 else 0.0
        evidence.update(z=round(test.z, 4), p_value=test.p_value, relative_loss=round(loss, 4))
        if test.p_value < config.alpha and loss >= config.min_relative_loss:
            detail = (
                f"rolled back: CTR {ours.ctr:.2%} over {ours.impressions} impressions is "
                f"significantly below v{previous}'s {theirs.ctr:.2%} (p={test.p_value:.2g})"
            )
            return Judgement(Verdict.ROLLBACK, detail, evidence)
    if elapsed <= config.window:
        return Judgement(Verdict.WATCH, "guard window open", evidence)
    if enough:
        detail = f"guard passed: v{champion} CTR {ours.ctr:.2%} vs v{previous} {theirs.ctr:.2%}"
        return Judgement(Verdict.PASSED, detail, evidence)
    detail = (
        f"guard closed without a verdict: {ours.impressions} / {theirs.impressions} "
        f"impressions, need {config.min_impressions}"
    )
    return Judgement(Verdict.NO_VERDICT, detail, evidence)


def guard_counts(
    lake: Lake,
    monitor: MonitorConfig,
    config: GuardConfig,
    champion: str,
    previous: str,
    promoted_at: datetime,
    now: datetime,
    reference_start: datetime | None = None,
) -> tuple[Counts, Counts, dict[str, Any]]:
    """The new champion's counts since approval and the previous one's just before.

    `reference_start` keeps the previous champion's window after an engagement drop: a
    challenger promoted because of a drop is compared with what the old model did since the
    drop, not with its better days before it.
    """
    hi = now - monitor.attribution
    ref_lo = promoted_at - config.reference
    if reference_start is not None:
        ref_lo = min(max(ref_lo, reference_start), promoted_at - timedelta(seconds=1))
    lo = min(ref_lo, hi - timedelta(seconds=1))
    engagement = Engagement.from_lake(lake, lo, max(hi, promoted_at), monitor.attribution)
    ours = engagement.counts(champion, promoted_at, max(hi, promoted_at))
    theirs = engagement.counts(previous, ref_lo, promoted_at)
    windows = {
        "champion_window": [promoted_at.isoformat(), max(hi, promoted_at).isoformat()],
        "previous_window": [ref_lo.isoformat(), promoted_at.isoformat()],
    }
    return ours, theirs, windows
