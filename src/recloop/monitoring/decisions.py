"""The decision log: every action the loop takes (or declines), with why, as JSON lines.

A decision names its trigger (a detector, a schedule, a person), the versions involved, the
metrics it compared and the evidence (usually the alarms' evidence). The log lives beside the
model registry (`<registry>/decisions.jsonl`, file:// or s3://); `recloop loop history` and the
dashboard's retrain/promote/rollback markers read it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.monitoring.jsonl import JsonLinesLog


class Action(StrEnum):
    ALARM = "alarm"  # a detector fired; no action taken (yet)
    RETRAIN = "retrain"  # a training run was started
    PROMOTE = "promote"  # a challenger passed the gate and became champion
    REJECT = "reject"  # a challenger failed the gate
    ROLLBACK = "rollback"  # a new champion lost online and the previous one came back
    HOLD = "hold"  # a check ran and decided to do nothing, with its reasons


@dataclass(frozen=True)
class Decision:
    """One structured decision event."""

    action: Action
    trigger: str  # the detector name, "schedule", "manual", "guard_window", ...
    model_version: str | None = None  # the version acted on (challenger, new champion)
    previous_version: str | None = None  # the champion before the decision
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    decision_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "at": self.at.astimezone(UTC).isoformat(),
            "action": self.action.value,
            "trigger": self.trigger,
            "model_version": self.model_version,
            "previous_version": self.previous_version,
            "metrics": self.metrics,
            "evidence": self.evidence,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            action=Action(data["action"]),
            trigger=str(data["trigger"]),
            model_version=data.get("model_version"),
            previous_version=data.get("previous_version"),
            metrics=dict(data.get("metrics") or {}),
            evidence=dict(data.get("evidence") or {}),
            detail=str(data.get("detail") or ""),
            at=datetime.fromisoformat(data["at"]),
            decision_id=str(data["decision_id"]),
        )


def decision_log_uri(settings: Settings) -> str:
    """monitor_decision_log_uri, else decisions.jsonl under the registry root.

    A SageMaker registry has no folder: the log then goes under registry_artifacts_uri.
    """
    if settings.monitor_decision_log_uri:
        return settings.monitor_decision_log_uri
    root = settings.registry_uri
    if root.startswith("sagemaker://"):
        if not settings.registry_artifacts_uri:
            raise ConfigError(
                "the registry is SageMaker: set RECLOOP_MONITOR_DECISION_LOG_URI "
                "or RECLOOP_REGISTRY_ARTIFACTS_URI for the decision log"
            )
        root = settings.registry_artifacts_uri
    return f"{root.rstrip('/')}/decisions.jsonl"


class DecisionLog:
    """Append and list decisions."""

    def __init__(self, uri: str, s3_client: Any = None) -> None:
        self._log = JsonLinesLog(uri, s3_client=s3_client)
        self.uri = uri

    @classmethod
    def from_settings(cls, settings: Settings, s3_client: Any = None) -> DecisionLog:
        return cls(decision_log_uri(settings), s3_client=s3_client)

    def append(self, decision: Decision) -> Decision:
        self._log.append(decision.to_dict())
        return decision

    def record(self, action: Action | str, trigger: str, **fields: Any) -> Decision:
        """Build and append a decision in one call: `log.record("promote", "gate", ...)`."""
        return self.append(Decision(Action(action), trigger, **fields))

    def list(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        actions: Sequence[Action | str] | None = None,
        limit: int | None = None,
    ) -> list[Decision]:
        """Decisions in [since, until), oldest first; `limit` keeps the newest ones."""
        wanted = {Action(a) for a in actions} if actions else None
        found = []
        for record in self._log.read():
            decision = Decision.from_dict(record)
            if since is not None and decision.at < since:
                continue
            if until is not None and decision.at >= until:
                continue
            if wanted is not None and decision.action not in wanted:
                continue
            found.append(decision)
        found.sort(key=lambda d: d.at)
        return found[-limit:] if limit else found
