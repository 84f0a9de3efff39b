"""Request and response bodies, in families (`...Public` is what the API returns)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from recloop.events import Event

Source = Literal["personalised", "cold_start", "popularity_fallback"]


class RecommendedItemPublic(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    categories: list[str] = Field(default_factory=list)
    reason: str


class RecommendationsPublic(BaseModel):
    rec_id: str = Field(description="quote it in click events to attribute them")
    user_id: str
    model_version: str
    items: list[RecommendedItemPublic]
    degraded: bool = Field(description="true when a backend failed and a fallback answered")
    degraded_reasons: list[str] = Field(
        default_factory=list, description='the backends that failed: "features", "candidates"'
    )
    source: Source


class SimilarItemsPublic(BaseModel):
    item_id: str
    model_version: str
    items: list[RecommendedItemPublic]
    degraded: bool = False


class EventBatchIn(BaseModel):
    """What the web tracker posts: 1 to 500 events (views; clicks carrying rec_id)."""

    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1, max_length=500)


class EventsAcceptedPublic(BaseModel):
    accepted: int


class UserSamplePublic(BaseModel):
    model_version: str
    user_ids: list[str]


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyPublic(BaseModel):
    ready: bool = Field(description="a model is loaded (backends do not count)")
    model_version: str | None
    checks: dict[str, str]
    backends: dict[str, str] = Field(
        default_factory=dict,
        description='per backend, "ok" or why its last background check failed (reported only)',
    )


class VersionPublic(BaseModel):
    model_version: str | None
    family: str | None
    loaded_at: datetime | None
    registry: str | None
    swaps: int
    rejected_versions: list[str]
    service_version: str
    worker_pid: int = Field(description="the uvicorn worker that answered (each swaps on its own)")


class FieldErrorPublic(BaseModel):
    field: str
    message: str


class ErrorDetailPublic(BaseModel):
    code: str
    message: str
    fields: list[FieldErrorPublic] = Field(default_factory=list)


class ErrorPublic(BaseModel):
    """The one error body every non-2xx answer carries."""

    error: ErrorDetailPublic
