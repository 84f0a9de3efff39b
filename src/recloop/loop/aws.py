"""The loop in AWS: a retrain trigger from the monitor Lambda starts a SageMaker training job.

    from recloop.loop.aws import TrainingJobStarter
    monitor = Monitor(settings, on_trigger=TrainingJobStarter(settings, decisions))

The job trains on the lake up to the alarm's time, registers and gates its model; its state
change event then runs lambdas/promote. The starter only launches (it does not wait) and
records a `retrain` decision with the alarms' evidence and the job's name, or a `hold` when a
retrain ran less than `cooldown` ago (the schedule keeps firing while an alarm lasts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from recloop.config import Settings
from recloop.monitoring import MonitorReport
from recloop.monitoring.decisions import Action, DecisionLog

Launcher = Callable[..., Any]


class TrainingJobStarter:
    """`on_trigger` for the monitor Lambda: start one training job per incident."""

    def __init__(
        self,
        settings: Settings,
        decisions: DecisionLog,
        cooldown: timedelta | None = None,
        boto_session: Any = None,
        launcher: Launcher | None = None,
    ) -> None:
        self.settings = settings
        self.decisions = decisions
        self.cooldown = cooldown or timedelta(minutes=settings.monitor_current_minutes)
        self.boto_session = boto_session
        if launcher is None:
            from recloop.training.sagemaker import launch

            launcher = launch
        self.launch = launcher

    def __call__(self, report: MonitorReport) -> str | None:
        """Launch a job for the report's retrain triggers; its name, or None when held."""
        from recloop.training.pipeline import TrainOptions
        from recloop.training.sagemaker import LaunchConfig

        triggers = report.triggers()
        if not triggers:
            return None
        trigger = triggers[0].detector
        evidence: dict[str, Any] = {"alarms": [a.to_dict() for a in triggers]}
        last = self.decisions.list(actions=[Action.RETRAIN], limit=1)
        if last and report.now - last[-1].at < self.cooldown:
            self.decisions.record(
                Action.HOLD,
                trigger,
                model_version=report.model_version,
                evidence={**evidence, "last_retrain_at": last[-1].at.isoformat()},
                detail="retrain due but the last one was too recent (cooldown)",
                at=report.now,
            )
            return None
        options = TrainOptions.from_settings(until=report.now.isoformat())
        result = self.launch(
            options,
            LaunchConfig.from_settings(),
            boto_session=self.boto_session,
            wait=False,
            logs=False,
        )
        job = str(result.job_name)
        self.decisions.record(
            Action.RETRAIN,
            trigger,
            previous_version=report.model_version,
            evidence={**evidence, "job": job, "until": report.now.isoformat()},
            detail=f"SageMaker training job {job} started (trigger: {trigger})",
            at=report.now,
        )
        return job
