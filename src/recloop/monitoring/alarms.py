"""Alarms: what a detector concluded, with the numbers that made it conclude so."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class AlarmState(StrEnum):
    """The states of a CloudWatch alarm, so that on-call reads one vocabulary everywhere."""

    ALARM = "ALARM"
    OK = "OK"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@dataclass(frozen=True)
class Alarm:
    """One detector's verdict at one moment; `evidence` holds JSON-ready numbers and windows."""

    detector: str
    state: AlarmState
    summary: str
    at: datetime
    model_version: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.state is AlarmState.ALARM

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601)."""
        return {
            "detector": self.detector,
            "state": self.state.value,
            "summary": self.summary,
            "at": self.at.isoformat(),
            "model_version": self.model_version,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alarm:
        return cls(
            detector=data["detector"],
            state=AlarmState(data["state"]),
            summary=data["summary"],
            at=datetime.fromisoformat(data["at"]),
            model_version=data.get("model_version"),
            evidence=dict(data.get("evidence") or {}),
        )
