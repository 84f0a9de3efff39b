"""Request and response bodies, in families (`...Public` is what the API returns)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recloop.events import Event, EventType, strip_query

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


# Prefix of every event id a client chose: server-made ids (impressions' "imp-<rec_id>",
# access-log line hashes) can never be claimed, or suppressed as duplicates, by a client.
CLIENT_ID_PREFIX = "c-"


class ClientEvent(Event):
    """An event as a client may post it: anything but an impression, its id namespaced.

    Impressions are what the API itself showed (written by the API alone): a client posting
    them could fake a CTR drop and steer the loop. `source` is always "tracker".
    """

    @model_validator(mode="before")
    @classmethod
    def _namespaced(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            event_id = data.get("event_id")
            if isinstance(event_id, str) and event_id.strip():
                data["event_id"] = CLIENT_ID_PREFIX + event_id.strip()
            data["source"] = "tracker"
            context = data.get("context")
            if isinstance(context, dict):  # the stream holds no query string either
                data["context"] = {
                    k: strip_query(v) if k in ("page", "referrer") and isinstance(v, str) else v
                    for k, v in context.items()
                }
        return data

    @field_validator("event_type")
    @classmethod
    def _not_an_impression(cls, value: EventType) -> EventType:
        if value is EventType.IMPRESSION:
            raise ValueError("impressions are recorded by the API itself, not posted")
        return value


class EventBatchIn(BaseModel):
    """What the web tracker posts: 1 to 500 events (views; clicks carrying rec_id)."""

    model_config = ConfigDict(extra="forbid")

    events: list[ClientEvent] = Field(min_length=1, max_length=500)


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
