"""POST /events: the web tracker's endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from recloop.serving.deps import RuntimeDep
from recloop.serving.schemas import ErrorPublic, EventBatchIn, EventsAcceptedPublic

# Auth is added by create_app when a token is configured (no per-request cost otherwise).
router = APIRouter(tags=["events"])


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAcceptedPublic,
    responses={503: {"model": ErrorPublic, "description": "queue full; see Retry-After"}},
)
async def post_events(body: EventBatchIn, runtime: RuntimeDep) -> EventsAcceptedPublic:
    """Validate and queue events (views; clicks carrying rec_id) for the lake.

    The actor's history is updated at once, so the very next recommendation reflects a click.
    """
    accepted = await runtime.service.record_events(body.events)
    runtime.metrics.events.labels("accepted").inc(accepted)
    return EventsAcceptedPublic(accepted=accepted)
