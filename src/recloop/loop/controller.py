"""The retrain loop: monitor -> train -> gate -> promote -> guard window -> rollback.

This module is the only place where the loop's policy lives; `recloop loop`, the demo and the
two AWS Lambdas (monitor: `step` on the EventBridge schedule; promote: `finish` on a training
job's state change) all call it, with a trainer strategy (recloop.loop.training): in-process or
a SageMaker training job.

State: none in memory. The registry says who the champion is; the decision log says what was
decided; a small object store beside the decision log (`<log folder>/loop/`) holds the leases,
the alarms firing at the last pass and the events already handled. So a pass can run anywhere
(a laptop, a Lambda container that is gone a minute later) and passes are safe to run at once:
- one pass at a time: a pass takes the `pass` lease; a pass that cannot is a no-op;
- one retrain at a time: a retrain takes the `retrain` lease (expiring after the trainer's
  longest run) before it records its decision and starts the job; the lease goes back when
  the job's verdict is recorded, so a multi-hour job and an hourly schedule start one job;
- the decision is recorded before the job starts: a crash between the two leaves a decision
  without a job, never a job nobody knows about;
- an event handled once changes nothing when it comes again: a pass with an `event_id` already
  handled returns at once; a job's end whose verdict is recorded returns at once;
- a job's model is gated against the champion as it stands when the job finishes: the job
  registers its model without deciding; `finish` applies the job's own verdict only when it
  was reached against the current champion, and gates it again otherwise.

A pass (`step`):
1. No champion: train one (it must beat popularity).
2. A champion promoted by the loop over another and not yet cleared: the guard window
   (recloop.loop.guard). A significant online loss rejects it, which makes the previous
   champion champion again (a rollback); when the window ends, the guard is closed.
3. Otherwise the detectors run; an alarm is recorded once per firing (when it starts firing
   for this champion); an engagement drop or a stale model triggers a retrain, unless one ran
   less than `cooldown` ago, one is running, or the event stream is silent.
Every action and every firing alarm is a Decision in the decision log, with its evidence.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import numpy as np
import orjson

from recloop.config import Settings
from recloop.errors import ConfigError, NotFoundError, RecloopError
from recloop.lake import Lake
from recloop.lake.store import ObjectStore, store_from_uri
from recloop.loop.guard import GUARD, GuardConfig, Verdict, guard_counts, judge
from recloop.loop.lease import Lease, LeaseToken
from recloop.loop.training import COMPLETED, InProcessTrainer, JobEnd, Trainer, TrainSpec
from recloop.monitoring import (
    ENGAGEMENT_DROP,
    SILENT_STREAM,
    ModelInfo,
    MonitorConfig,
    MonitorReport,
    run_checks,
)
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.registry import ModelRegistry, ModelStatus, ModelVersion
from recloop.registry.gate import GateConfig, GateDecision, apply
from recloop.training.bundle import ModelBundle
from recloop.training.pipeline import gate_registered
from recloop.training.runs import RunTracker

log = logging.getLogger(__name__)

__all__ = ["GUARD", "GuardConfig", "LoopConfig", "RetrainLoop", "StepResult", "loop_state_uri"]

_RUNNING = ("InProgress", "Stopping")


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
    # The pass lease's expiry: a pass that died (a Lambda timeout) blocks others this long.
    pass_timeout: timedelta = timedelta(minutes=15)
    # A job's end is decided under a short lease of its own (two deliveries at once).
    finish_timeout: timedelta = timedelta(minutes=15)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (times in seconds); `from_dict` reads it back."""
        return _plain(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopConfig:
        """A configuration from `to_dict`'s shape; missing keys keep their defaults."""
        try:
            return _build(cls, data)  # type: ignore[no-any-return]
        except (TypeError, ValueError, RecloopError) as exc:
            raise ConfigError(f"loop configuration: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopConfig:
        if settings.loop_config:
            try:
                data = orjson.loads(settings.loop_config)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"RECLOOP_LOOP_CONFIG is not JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise ConfigError("RECLOOP_LOOP_CONFIG must be a JSON object")
            return cls.from_dict(data)
        monitor = MonitorConfig.from_settings(settings)
        holdout = timedelta(days=settings.train_holdout_days)
        validation = timedelta(days=settings.train_validation_days)
        train = TrainSpec(
            search_budget=settings.train_search_budget,
            window=max(timedelta(days=28), (holdout + validation) * 2),
            holdout=holdout,
            validation=validation,
            k=settings.train_k,
            eval_users=settings.train_eval_users,
            seed=settings.train_seed,
            # The gate's minimum, as `recloop train`'s: fewer holdout users is no decision.
            min_test_users=settings.train_min_holdout_users,
        )
        gate = GateConfig(
            settings.train_metric,
            settings.gate_margin,
            settings.gate_bootstrap_samples,
            settings.gate_confidence,
            settings.train_seed,
        )
        guard = GuardConfig(
            # The same window serving holds the previous champion back for.
            window=timedelta(minutes=settings.guard_window_minutes),
            min_impressions=monitor.min_impressions,
            alpha=monitor.alpha,
            min_relative_loss=settings.guard_min_relative_loss,
        )
        return cls(monitor, train, gate, guard, cooldown=monitor.current)


@dataclass
class StepResult:
    """What one pass saw and did."""

    now: datetime
    champion: str | None
    decisions: list[Decision] = field(default_factory=list)
    report: MonitorReport | None = None
    skipped: str | None = None  # why the pass did nothing: another pass runs, event handled

    def actions(self) -> list[str]:
        return [d.action.value for d in self.decisions]


def loop_state_uri(decision_log_uri: str) -> str:
    """Where the loop keeps its leases and markers: `loop/` beside the decision log."""
    return decision_log_uri.rsplit("/", 1)[0] + "/loop"


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
        trainer: Trainer | None = None,
        state: ObjectStore | None = None,
        s3_client: Any = None,
        clock: Callable[[], datetime] | None = None,
        train_spec_for: Callable[[int], TrainSpec] | None = None,
    ) -> None:
        self.lake = lake
        self.registry = registry
        self.decisions = decisions
        self.config = config or LoopConfig()
        self.cache_dir = Path(cache_dir) if cache_dir else Path(".recloop") / "loop-cache"
        self.trainer: Trainer = trainer or InProcessTrainer(lake, registry)
        self.state = state or store_from_uri(loop_state_uri(decisions.uri), s3_client=s3_client)
        self._clock = clock or (lambda: datetime.now(UTC))
        # The n-th retrain's spec (n counts from 1); the demo's sabotage scenario swaps one in.
        self._train_spec_for = train_spec_for or (lambda n: self.config.train)
        self._known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.retrain_lease = Lease(self.state, "retrain")
        self.pass_lease = Lease(self.state, "pass")

    # ---- one pass ---------------------------------------------------------------------------

    def step(self, now: datetime | None = None, event_id: str | None = None) -> StepResult:
        """One pass of the loop at `now` (default: the clock); `event_id` makes it idempotent."""
        now = (now or self._clock()).astimezone(UTC)
        result = StepResult(now, None)
        if event_id is not None and self._handled(event_id):
            result.skipped = f"event {event_id} was handled already"
            return result
        token = self.pass_lease.acquire(event_id or uuid.uuid4().hex, self.config.pass_timeout, now)
        if token is None:
            result.skipped = "another pass is running"
            return result
        try:
            # Checked again under the lease: a duplicate delivery may have finished meanwhile.
            if event_id is not None and self._handled(event_id):
                result.skipped = f"event {event_id} was handled already"
                return result
            self._pass(result)
            if event_id is not None:
                self.state.put_if_absent(f"events/{event_id}", orjson.dumps(result.actions()))
        finally:
            self.pass_lease.release(token)
        return result

    def _handled(self, event_id: str) -> bool:
        return any(True for _ in self.state.list(f"events/{event_id}"))

    def _pass(self, result: StepResult) -> None:
        now = result.now
        champion = self.registry.champion()
        result.champion = champion.version if champion else None
        if champion is None:
            self._retrain(result, "no_champion", None, {"reason": "nothing is approved yet"})
            return
        guarding = self._guard_open(champion)
        if guarding:
            self._guard(result, champion)
            if any(d.action is Action.ROLLBACK for d in result.decisions):
                return
        info = self._model_info(champion, now)
        report = run_checks(self.lake, info, now, self.config.monitor)
        result.report = report
        self._record_alarms(result, report, champion)
        triggers = report.triggers()
        if not triggers or guarding:
            # A champion in its guard window is judged by the guard, not retrained.
            return
        evidence: dict[str, Any] = {"alarms": [a.to_dict() for a in triggers]}
        hold = self._retrain_blocked(now, report, evidence)
        if hold is not None:
            detail, extra = hold
            self._hold(result, triggers[0].detector, detail, {**evidence, **extra}, champion)
            return
        self._retrain(result, triggers[0].detector, champion, evidence)

    def _record_alarms(
        self, result: StepResult, report: MonitorReport, champion: ModelVersion
    ) -> None:
        """An alarm is logged when it starts firing for a champion, not on every pass."""
        firing = sorted({f"{a.detector}@{champion.version}" for a in report.firing})
        before = self._firing_before()
        for alarm in report.firing:
            if f"{alarm.detector}@{champion.version}" in before:
                continue
            result.decisions.append(
                self.decisions.record(
                    Action.ALARM,
                    alarm.detector,
                    model_version=champion.version,
                    evidence=alarm.to_dict(),
                    detail=alarm.summary,
                    at=result.now,
                )
            )
        if set(firing) != before:
            self._write_firing(firing)

    def _firing_before(self) -> set[str]:
        keys = [info.key for info in self.state.list("firing/")]
        if not keys:
            return set()
        return set(orjson.loads(self.state.get(keys[-1])))

    def _write_firing(self, firing: list[str]) -> None:
        # Objects are never replaced: each change is the next numbered object (under the pass
        # lease, so numbers do not race; a lost race only repeats an alarm line).
        keys = [info.key for info in self.state.list("firing/")]
        number = int(keys[-1].rsplit("/", 1)[-1].split(".")[0]) + 1 if keys else 1
        self.state.put_if_absent(f"firing/{number:010d}.json", orjson.dumps(firing))

    def _retrain_blocked(
        self, now: datetime, report: MonitorReport, evidence: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """Why a due retrain must wait (the detail and extra evidence), or None."""
        running = self.retrain_lease.holder(now)
        if running is not None:
            return _still_running(running), {"running": running.to_dict()}
        last = self._last(Action.RETRAIN)
        if last is not None and now - last.at < self.config.cooldown:
            return (
                "retrain due but the last one was too recent (cooldown)",
                {
                    "last_retrain_at": last.at.isoformat(),
                    "cooldown_seconds": self.config.cooldown.total_seconds(),
                },
            )
        silent = report.get(SILENT_STREAM)
        if silent is not None and silent.firing:
            # No fresh events: a retrain would learn nothing new and the gate has no holdout.
            return "retrain due but the event stream is silent", {"silent_stream": silent.to_dict()}
        return None

    def _hold(
        self,
        result: StepResult,
        trigger: str,
        detail: str,
        evidence: dict[str, Any],
        champion: ModelVersion | None,
    ) -> None:
        """Record why a due retrain waits; a job still running is said once, not every pass."""
        running = (evidence.get("running") or {}).get("holder")
        last = self._last(Action.HOLD)
        if running and last and (last.evidence.get("running") or {}).get("holder") == running:
            return
        result.decisions.append(
            self.decisions.record(
                Action.HOLD,
                trigger,
                model_version=champion.version if champion else None,
                previous_version=champion.version if champion else None,
                evidence=evidence,
                detail=detail,
                at=result.now,
            )
        )

    # ---- retrain: lease, decision, job -------------------------------------------------------

    def _retrain(
        self,
        result: StepResult,
        trigger: str,
        champion: ModelVersion | None,
        evidence: dict[str, Any],
    ) -> None:
        now = result.now
        previous = champion.version if champion else None
        job = self.trainer.job_name()
        token = self.retrain_lease.acquire(
            job, self.trainer.lease_ttl, now, {"trigger": trigger, "trainer": self.trainer.kind}
        )
        if token is None:
            running = self.retrain_lease.holder(now)
            extra = {"running": running.to_dict() if running else None}
            self._hold(result, trigger, _still_running(running), {**evidence, **extra}, champion)
            return
        number = len(self.decisions.list(actions=[Action.RETRAIN])) + 1
        spec = self._train_spec_for(number)
        options = spec.options(self.config.gate, now)
        # Recorded before the job starts: the job's end is matched to this decision by name.
        result.decisions.append(
            self.decisions.record(
                Action.RETRAIN,
                trigger,
                previous_version=previous,
                metrics={"retrain_number": number},
                evidence={
                    **evidence,
                    "job": job,
                    "trainer": self.trainer.kind,
                    "lease": token.to_dict(),
                    "train": spec.to_dict(),
                    "guard_reference_start": _reference_start(evidence),
                },
                detail=f"retrain #{number} on the last {spec.window} (trigger: {trigger}, "
                f"{self.trainer.kind} job {job})",
                at=now,
            )
        )
        try:
            ended = self.trainer.start(job, options, {"trigger": trigger, "job": job})
        except RecloopError as exc:
            ended = JobEnd(job, "Failed", f"the job did not start: {exc}")
        if ended is not None:
            result.decisions.extend(self.finish(ended.job, ended.status, ended.failure))

    # ---- a job's end: the verdict against the champion as it stands -----------------------------

    def finish(
        self, job: str, status: str, failure: str | None = None, now: datetime | None = None
    ) -> list[Decision]:
        """A training job ended (`status` as SageMaker says it): gate, promote or hold.

        Idempotent: a job whose verdict is recorded changes nothing; two deliveries at once
        are serialised by a lease of the job's own.
        """
        if status in _RUNNING:
            return []
        if self._verdict_of(job) is not None:
            return []
        at = (now or self._clock()).astimezone(UTC)
        claim_lease = Lease(self.state, f"job-{job}")
        claim = claim_lease.acquire(uuid.uuid4().hex, self.config.finish_timeout, at)
        if claim is None:
            return []  # another delivery of the same event is deciding it
        try:
            if self._verdict_of(job) is not None:
                return []
            retrain = self._retrain_of(job)
            decision = self._decide(job, status, failure, retrain)
        except BaseException:
            claim_lease.release(claim)  # a retry of the event may try again
            raise
        self._release_retrain(job, retrain)
        return [decision]

    def _decide(
        self, job: str, status: str, failure: str | None, retrain: Decision | None
    ) -> Decision:
        champion = self.registry.champion()
        before = champion.version if champion else None
        context: dict[str, Any] = {"job": job}
        if retrain is not None:
            context["retrain_trigger"] = retrain.trigger
            context["guard_reference_start"] = retrain.evidence.get("guard_reference_start")
        if status != COMPLETED:
            return self.decisions.record(
                Action.HOLD,
                "training_job",
                previous_version=before,
                evidence={**context, "status": status, "failure_reason": failure},
                detail=f"training job {job} {status.lower()}: {failure or 'no reason given'}",
                at=self._clock(),
            )
        version = self._version_of(job)
        if version.status is ModelStatus.PENDING:
            version, verdict = self._gate(job, version, champion)
            evidence, reason = verdict.evidence, verdict.reason
        else:  # decided by hand, or by a job that applied its own gate
            evidence, reason = version.evidence, version.reason or ""
        approved = version.status is ModelStatus.APPROVED
        return self.decisions.record(
            Action.PROMOTE if approved else Action.REJECT,
            "gate",
            model_version=version.version,
            previous_version=before,
            metrics=version.metrics,
            evidence={**evidence, **context, "run_id": version.run_id},
            detail=reason,
            at=self._clock(),
        )

    def _gate(
        self, job: str, version: ModelVersion, champion: ModelVersion | None
    ) -> tuple[ModelVersion, GateDecision]:
        """The job's own verdict when it was reached against today's champion; else a new one."""
        current = champion.version if champion else None
        recorded = self._job_verdict(job)
        if recorded is not None and recorded.evidence.get("champion_version") == current:
            return apply(self.registry, version.version, recorded), recorded
        log.info("job %s was gated against another champion: gating it against v%s", job, current)
        options = self.config.train.options(self.config.gate, self._clock())
        return gate_registered(options, self.lake, self.registry, version.version)

    def _job_verdict(self, job: str) -> GateDecision | None:
        try:
            record = RunTracker.for_registry(self.registry).get(job)
        except RecloopError:
            return None
        gate = record.results.get("gate")
        if not isinstance(gate, dict) or "approved" not in gate:
            return None
        return GateDecision(bool(gate["approved"]), str(gate["reason"]), dict(gate["evidence"]))

    def _version_of(self, job: str) -> ModelVersion:
        found = [v for v in self.registry.list() if v.run_id == job]
        if not found:
            raise NotFoundError(f"training job {job} has no registered model version (yet)")
        return found[-1]

    def _retrain_of(self, job: str) -> Decision | None:
        """The retrain decision that started `job` (SageMaker appends to the recorded name)."""
        for decision in reversed(self.decisions.list(actions=[Action.RETRAIN])):
            name = str(decision.evidence.get("job") or "")
            if name and (job == name or job.startswith(name + "-")):
                return decision
        return None

    def _verdict_of(self, job: str) -> Decision | None:
        verdicts = self.decisions.list(actions=[Action.PROMOTE, Action.REJECT, Action.HOLD])
        found = [d for d in verdicts if d.evidence.get("job") == job and d.trigger != GUARD]
        return found[-1] if found else None

    def _release_retrain(self, job: str, retrain: Decision | None) -> None:
        if retrain is None:
            return  # a job the loop did not start (a manual one): it holds no lease
        lease = retrain.evidence.get("lease") or {}
        token = self.retrain_lease.find(str(retrain.evidence.get("job")))
        if token is not None and token.generation == lease.get("generation"):
            self.retrain_lease.release(token)

    # ---- the guard window ---------------------------------------------------------------------

    def _promotion(self, version: str) -> Decision | None:
        promotions = self.decisions.list(actions=[Action.PROMOTE])
        found = [d for d in promotions if d.model_version == version]
        return found[-1] if found else None

    def _guard_open(self, champion: ModelVersion) -> bool:
        """A champion promoted by the loop over another is watched until its guard closes."""
        promotion = self._promotion(champion.version)
        if promotion is None or promotion.previous_version is None:
            return False  # the first model, or approved by hand: nothing to roll back to
        return not any(
            d.trigger == GUARD and d.model_version == champion.version
            for d in self.decisions.list(actions=[Action.HOLD, Action.ROLLBACK])
        )

    def _guard(self, result: StepResult, champion: ModelVersion) -> None:
        now, g = result.now, self.config.guard
        promotion = self._promotion(champion.version)
        assert promotion is not None and promotion.previous_version is not None
        previous = promotion.previous_version
        ours, theirs, windows = guard_counts(
            self.lake, self.config.monitor, champion.version, previous, promotion.at, now
        )
        judgement = judge(champion.version, previous, ours, theirs, now - promotion.at, g)
        if judgement.verdict is Verdict.WATCH:
            return
        evidence: dict[str, Any] = {
            **windows,
            "champion": ours.to_dict(),
            "previous": theirs.to_dict(),
            "guard": g.to_dict(),
            **judgement.evidence,
        }
        metrics = {"ctr": ours.ctr, "previous_ctr": theirs.ctr}
        action = Action.HOLD
        if judgement.verdict is Verdict.ROLLBACK:
            self._roll_back(champion.version, previous, judgement.detail, evidence)
            action = Action.ROLLBACK
        result.decisions.append(
            self.decisions.record(
                action,
                GUARD,
                model_version=champion.version,
                previous_version=previous,
                metrics=metrics,
                evidence=evidence,
                detail=judgement.detail,
                at=now,
            )
        )

    def _roll_back(
        self, version: str, previous: str, reason: str, evidence: dict[str, Any]
    ) -> None:
        self.registry.reject(version, reason, evidence)
        restored = self.registry.champion()
        if restored is None or restored.version != previous:
            # The previous champion was rejected meanwhile (by hand): approve it again.
            self.registry.approve(previous, f"restored by rollback of v{version}", evidence)

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


def _plain(value: Any) -> Any:
    """Dataclasses as dicts, timedeltas as seconds, tuples as lists (JSON data)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    """The inverse of `_plain` for one dataclass, by its type hints."""
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} for {cls.__name__}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, raw in data.items():
        hint = hints[name]
        if get_origin(hint) in (Union, UnionType):  # X | None
            if raw is None:
                values[name] = None
                continue
            options = [arg for arg in get_args(hint) if arg is not type(None)]
            hint = options[0] if len(options) == 1 else hint
        if hint is timedelta:
            values[name] = timedelta(seconds=float(raw))
        elif isinstance(hint, type) and is_dataclass(hint):
            values[name] = _build(hint, dict(raw))
        elif get_origin(hint) is tuple:
            values[name] = tuple(raw)
        else:
            values[name] = raw
    return cls(**values)


def _still_running(running: LeaseToken | None) -> str:
    if running is None:  # taken and given back between our two reads: a race just lost
        return "retrain due but another pass started one a moment ago"
    return (
        f"retrain due but job {running.holder} (started {running.acquired_at:%H:%M:%S}) "
        "is still running"
    )


def _reference_start(evidence: dict[str, Any]) -> str | None:
    """Start of the current window of the engagement-drop alarm that triggered a retrain."""
    for alarm in evidence.get("alarms", []):
        if alarm.get("detector") == ENGAGEMENT_DROP:
            window = (alarm.get("evidence") or {}).get("current_window")
            if window:
                return str(window[0])
    return None
