"""The retrain loop: monitor -> train -> gate -> promote -> guard window -> rollback.

One `step(now)` is one pass; `recloop loop` calls it on an interval, the monitor Lambda once per
schedule. The loop keeps no state of its own between passes: the registry says who the champion
is and when it was approved, the decision log says what was already decided. So a pass can run
anywhere, and two passes never disagree about the past.

A pass:
1. No champion: train one (it must beat popularity).
2. A champion approved less than `guard` ago that has not been cleared: the guard window. Its
   CTR since approval is compared with the previous champion's CTR just before; significantly
   lower (one-sided two-proportion z-test, minimum volumes, minimum relative loss) -> the new
   champion is rejected, which makes the previous one champion again (a rollback). When the
   window ends without a significant loss, the guard is cleared.
3. Otherwise the detectors run; an engagement drop or a stale model triggers a retrain (unless
   one ran less than `cooldown` ago), gated against the champion; the winner is approved and
   serving swaps to it on its next registry poll.
Every action and every firing alarm is a Decision in the decision log, with its evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recloop.config import Settings
from recloop.errors import RecloopError
from recloop.lake import Lake
from recloop.loop.training import TrainOutcome, TrainSpec, train_and_gate
from recloop.monitoring import (
    ENGAGEMENT_DROP,
    SILENT_STREAM,
    Counts,
    Engagement,
    ModelInfo,
    MonitorConfig,
    MonitorReport,
    run_checks,
    two_proportion_ztest,
)
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.registry import ModelRegistry, ModelVersion
from recloop.registry.gate import GateConfig
from recloop.training.bundle import ModelBundle

log = logging.getLogger(__name__)

GUARD = "guard_window"


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


@dataclass(frozen=True)
class LoopConfig:
    """Everything one pass needs to decide."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    train: TrainSpec = field(default_factory=TrainSpec)
    gate: GateConfig = field(default_factory=GateConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    cooldown: timedelta = timedelta(hours=1)  # between two retrains
    # True: the drop detector's baseline is the champion's first hours in service; False: the
    # window just before the current one (a sliding baseline that ignores slow decay).
    baseline_from_promotion: bool = True
    # After an engagement drop, its pre-drop baseline stays the reference for this long (or
    # until a promotion), so a rejected retrain is retried while CTR stays down.
    incident_window: timedelta = timedelta(hours=6)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopConfig:
        monitor = MonitorConfig.from_settings(settings)
        train = TrainSpec(
            window=timedelta(days=28),
            holdout=timedelta(days=min(settings.train_holdout_days, 7.0)),
            k=settings.train_k,
            eval_users=settings.train_eval_users,
            seed=settings.train_seed,
        )
        gate = GateConfig(
            settings.train_metric,
            settings.gate_margin,
            settings.gate_bootstrap_samples,
            settings.gate_confidence,
            settings.train_seed,
        )
        guard = GuardConfig(
            window=monitor.current * 2,
            min_impressions=monitor.min_impressions,
            alpha=monitor.alpha,
            min_relative_loss=monitor.min_relative_drop,
            reference=monitor.current,
        )
        return cls(monitor, train, gate, guard, cooldown=monitor.current)


@dataclass
class StepResult:
    """What one pass saw and did."""

    now: datetime
    champion: str | None
    decisions: list[Decision] = field(default_factory=list)
    report: MonitorReport | None = None
    outcome: TrainOutcome | None = None

    def actions(self) -> list[str]:
        return [d.action.value for d in self.decisions]


class RetrainLoop:
    """Runs passes of the closed loop against a lake, a registry and a decision log."""

    def __init__(
        self,
        lake: Lake,
        registry: ModelRegistry,
        decisions: DecisionLog,
        config: LoopConfig | None = None,
        cache_dir: Path | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        train_spec_for: Callable[[int], TrainSpec] | None = None,
    ) -> None:
        self.lake = lake
        self.registry = registry
        self.decisions = decisions
        self.config = config or LoopConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else Path(".recloop") / "loop-cache"
        self._clock = clock or (lambda: datetime.now(UTC))
        # The n-th retrain's spec (n counts from 1); the demo's sabotage scenario swaps one in.
        self._train_spec_for = train_spec_for or (lambda n: self.config.train)
        self._known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._firing: set[tuple[str, str]] = set()  # alarms firing at the last pass

    # ---- one pass ---------------------------------------------------------------------------

    def step(self, now: datetime | None = None) -> StepResult:
        """One pass of the loop at `now` (default: the clock)."""
        now = (now or self._clock()).astimezone(UTC)
        champion = self.registry.champion()
        result = StepResult(now, champion.version if champion else None)
        if champion is None:
            self._retrain(result, "no_champion", None, {"reason": "nothing is approved yet"})
            return result
        guarding = self._guard_open(champion, now)
        if guarding:
            self._guard(result, champion)
            if any(d.action is Action.ROLLBACK for d in result.decisions):
                return result
        info = self._model_info(champion, now)
        report = run_checks(self.lake, info, now, self.config.monitor)
        result.report = report
        firing = {(a.detector, champion.version) for a in report.firing}
        fresh = [a for a in report.firing if (a.detector, champion.version) not in self._firing]
        self._firing = firing
        # An alarm is logged when it starts firing, not on every pass while it lasts.
        for alarm in fresh:
            result.decisions.append(
                self.decisions.record(
                    Action.ALARM,
                    alarm.detector,
                    model_version=champion.version,
                    evidence=alarm.to_dict(),
                    detail=alarm.summary,
                    at=now,
                )
            )
        triggers = report.triggers()
        if not triggers or guarding:
            # A champion in its guard window is judged by the guard, not retrained.
            return result
        last = self._last(Action.RETRAIN)
        if last is not None and now - last.at < self.config.cooldown:
            result.decisions.append(
                self.decisions.record(
                    Action.HOLD,
                    triggers[0].detector,
                    model_version=champion.version,
                    evidence={
                        "alarms": [a.to_dict() for a in triggers],
                        "last_retrain_at": last.at.isoformat(),
                        "cooldown_seconds": self.config.cooldown.total_seconds(),
                    },
                    detail="retrain due but the last one was too recent (cooldown)",
                    at=now,
                )
            )
            return result
        evidence = {"alarms": [a.to_dict() for a in triggers]}
        silent = report.get(SILENT_STREAM)
        if silent is not None and silent.firing:
            # No fresh events: a retrain would learn nothing new and the gate has no holdout.
            result.decisions.append(
                self.decisions.record(
                    Action.HOLD,
                    triggers[0].detector,
                    model_version=champion.version,
                    evidence={**evidence, "silent_stream": silent.to_dict()},
                    detail="retrain due but the event stream is silent",
                    at=now,
                )
            )
            return result
        self._retrain(result, triggers[0].detector, champion, evidence)
        return result

    # ---- retrain, gate, promote ---------------------------------------------------------------

    def _retrain(
        self,
        result: StepResult,
        trigger: str,
        champion: ModelVersion | None,
        evidence: dict[str, Any],
    ) -> None:
        now = result.now
        previous = champion.version if champion else None
        number = len(self.decisions.list(actions=[Action.RETRAIN])) + 1
        spec = self._train_spec_for(number)
        result.decisions.append(
            self.decisions.record(
                Action.RETRAIN,
                trigger,
                previous_version=previous,
                metrics={"retrain_number": number},
                evidence={**evidence, "train": spec.to_dict()},
                detail=f"retrain #{number} on the last {spec.window} (trigger: {trigger})",
                at=now,
            )
        )
        try:
            outcome = train_and_gate(
                self.lake, self.registry, spec, self.config.gate, now, context={"trigger": trigger}
            )
        except RecloopError as exc:  # too little fresh data, an empty window, a bad bundle
            result.decisions.append(
                self.decisions.record(
                    Action.HOLD,
                    trigger,
                    previous_version=previous,
                    detail=f"retrain skipped: {exc}",
                    at=self._clock(),
                )
            )
            return
        result.outcome = outcome
        action = Action.PROMOTE if outcome.decision.approved else Action.REJECT
        result.decisions.append(
            self.decisions.record(
                action,
                "gate",
                model_version=outcome.version.version,
                previous_version=previous,
                metrics=outcome.metrics,
                evidence={
                    **outcome.decision.evidence,
                    "guard_reference_start": _reference_start(evidence),
                    "run_id": outcome.run_id,
                    "retrain_trigger": trigger,
                    "train_seconds": round(outcome.seconds, 3),
                },
                detail=outcome.decision.reason,
                at=self._clock(),
            )
        )

    # ---- the guard window ---------------------------------------------------------------------

    def _promotion(self, version: str) -> Decision | None:
        promotions = self.decisions.list(actions=[Action.PROMOTE])
        found = [d for d in promotions if d.model_version == version]
        return found[-1] if found else None

    def _guard_open(self, champion: ModelVersion, now: datetime) -> bool:
        """A champion promoted by the loop over another is watched until its guard closes."""
        promotion = self._promotion(champion.version)
        if promotion is None or promotion.previous_version is None:
            return False  # the first model, or approved by hand: nothing to roll back to
        return not self._guard_closed(champion.version)

    def _guard_closed(self, version: str) -> bool:
        return any(
            d.trigger == GUARD and d.model_version == version
            for d in self.decisions.list(actions=[Action.HOLD, Action.ROLLBACK])
        )

    def guard_counts(
        self,
        champion: str,
        previous: str,
        promoted_at: datetime,
        now: datetime,
        reference_start: datetime | None = None,
    ) -> tuple[Counts, Counts, dict[str, Any]]:
        """The new champion's counts since approval and the previous one's just before.

        `reference_start` keeps the previous champion's window after an engagement drop: a
        challenger promoted because of a drop is compared with what the old model did since
        the drop, not with its better days before it.
        """
        g, m = self.config.guard, self.config.monitor
        hi = now - m.attribution
        ref_lo = promoted_at - g.reference
        if reference_start is not None:
            ref_lo = min(max(ref_lo, reference_start), promoted_at - timedelta(seconds=1))
        lo = min(ref_lo, hi - timedelta(seconds=1))
        engagement = Engagement.from_lake(self.lake, lo, max(hi, promoted_at), m.attribution)
        ours = engagement.counts(champion, promoted_at, max(hi, promoted_at))
        theirs = engagement.counts(previous, ref_lo, promoted_at)
        windows = {
            "champion_window": [promoted_at.isoformat(), max(hi, promoted_at).isoformat()],
            "previous_window": [ref_lo.isoformat(), promoted_at.isoformat()],
        }
        return ours, theirs, windows

    def _guard(self, result: StepResult, champion: ModelVersion) -> None:
        now, g = result.now, self.config.guard
        promotion = self._promotion(champion.version)
        assert promotion is not None and promotion.previous_version is not None
        previous = promotion.previous_version
        ref = promotion.evidence.get("guard_reference_start")
        ours, theirs, windows = self.guard_counts(
            champion.version,
            previous,
            promotion.at,
            now,
            datetime.fromisoformat(ref) if ref else None,
        )
        evidence: dict[str, Any] = {
            **windows,
            "champion": ours.to_dict(),
            "previous": theirs.to_dict(),
            "guard": g.to_dict(),
        }
        elapsed = now - promotion.at
        over = elapsed > g.window
        enough = min(ours.impressions, theirs.impressions) >= g.min_impressions
        if enough:
            test = two_proportion_ztest(ours, theirs)
            loss = 1 - ours.ctr / theirs.ctr if theirs.ctr > 0 else 0.0
            evidence.update(z=round(test.z, 4), p_value=test.p_value, relative_loss=round(loss, 4))
            if test.p_value < g.alpha and loss >= g.min_relative_loss:
                self._rollback(result, champion, previous, ours, theirs, evidence)
                return
        if not over:
            return  # keep watching
        detail = (
            f"guard passed: v{champion.version} CTR {ours.ctr:.2%} vs v{previous} {theirs.ctr:.2%}"
            if enough
            else f"guard closed without a verdict: {ours.impressions} / {theirs.impressions} "
            f"impressions, need {g.min_impressions}"
        )
        result.decisions.append(
            self.decisions.record(
                Action.HOLD,
                GUARD,
                model_version=champion.version,
                previous_version=previous,
                metrics={"ctr": ours.ctr, "previous_ctr": theirs.ctr},
                evidence=evidence,
                detail=detail,
                at=now,
            )
        )

    def _rollback(
        self,
        result: StepResult,
        champion: ModelVersion,
        previous: str,
        ours: Counts,
        theirs: Counts,
        evidence: dict[str, Any],
    ) -> None:
        reason = (
            f"rolled back: CTR {ours.ctr:.2%} over {ours.impressions} impressions is "
            f"significantly below v{previous}'s {theirs.ctr:.2%} (p={evidence['p_value']:.2g})"
        )
        self.registry.reject(champion.version, reason, evidence)
        restored = self.registry.champion()
        if restored is None or restored.version != previous:
            # The previous champion was rejected meanwhile (by hand): approve it again.
            why = f"restored by rollback of v{champion.version}"
            self.registry.approve(previous, why, evidence)
        result.decisions.append(
            self.decisions.record(
                Action.ROLLBACK,
                GUARD,
                model_version=champion.version,
                previous_version=previous,
                metrics={"ctr": ours.ctr, "previous_ctr": theirs.ctr},
                evidence=evidence,
                detail=reason,
                at=result.now,
            )
        )

    # ---- helpers ------------------------------------------------------------------------------

    def _last(self, action: Action) -> Decision | None:
        found = self.decisions.list(actions=[action], limit=1)
        return found[-1] if found else None

    def _incident_baseline(self, champion: ModelVersion, now: datetime) -> datetime | None:
        """Start of the pre-drop baseline of an engagement drop still open for the champion."""
        since = now - self.config.incident_window
        alarms = [
            d
            for d in self.decisions.list(since=since, actions=[Action.ALARM])
            if d.trigger == ENGAGEMENT_DROP and d.model_version == champion.version
        ]
        if not alarms:
            return None
        window = (alarms[0].evidence.get("evidence") or {}).get("baseline_window")
        return datetime.fromisoformat(window[0]) if window else None

    def _model_info(self, champion: ModelVersion, now: datetime) -> ModelInfo:
        items, users = self._known_ids(champion.version)
        decided = champion.decided_at
        baseline = self._incident_baseline(champion, now)
        if baseline is None and decided and self.config.baseline_from_promotion:
            baseline = datetime.fromisoformat(decided)
        return ModelInfo(
            champion.version,
            trained_at=datetime.fromisoformat(champion.created_at),
            promoted_at=baseline,
            known_items=items,
            known_users=users,
        )

    def _known_ids(self, version: str) -> tuple[np.ndarray, np.ndarray]:
        if version not in self._known:
            folder = self.registry.download(version, self.cache_dir / f"v{version}")
            bundle = ModelBundle.load(folder, verify=False)
            self._known[version] = (
                np.asarray(bundle.item_ids).astype(str),
                np.asarray(bundle.user_ids).astype(str),
            )
        return self._known[version]


def _reference_start(evidence: dict[str, Any]) -> str | None:
    """Start of the current window of the engagement-drop alarm that triggered a retrain."""
    for alarm in evidence.get("alarms", []):
        if alarm.get("detector") == ENGAGEMENT_DROP:
            window = (alarm.get("evidence") or {}).get("current_window")
            if window:
                return str(window[0])
    return None
