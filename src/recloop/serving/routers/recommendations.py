"""GET /recommendations."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response

from recloop.events import Id
from recloop.serving.deps import AuthDep, ServiceDep
from recloop.serving.errors import InvalidRequestError
from recloop.serving.schemas import RecommendationsPublic

router = APIRouter(tags=["recommendations"], dependencies=[AuthDep])


@router.get("/recommendations", response_model=RecommendationsPublic)
async def recommendations(
    service: ServiceDep,
    user_id: Annotated[Id | None, Query(description="signed-in user")] = None,
    visitor_id: Annotated[Id | None, Query(description="anonymous visitor id")] = None,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    exclude_seen: bool = True,
    category: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Response:
    """Top k items for a user or an anonymous visitor (cold start when unknown, never an error)."""
    actor = user_id or visitor_id
    if actor is None:
        raise InvalidRequestError("query.user_id", "give user_id or visitor_id")
    result = await service.recommend(
        actor, k=k, exclude_seen=exclude_seen, category=category, signed_in=user_id is not None
    )
    # Serialised here, once: the hot path skips FastAPI's second validation of the response
    # model (the schema above still documents it, and the tests check the shape).
    body = {
        "rec_id": result.rec_id,
        "user_id": result.user_id,
        "model_version": result.model_version,
        "items": [
            {
                "item_id": i.item_id,
                "score": i.score,
                "title": i.title,
                "categories": list(i.categories),
                "reason": i.reason,
            }
            for i in result.items
        ],
        "degraded": result.degraded,
        "source": result.source,
    }
    return Response(orjson.dumps(body), media_type="application/json")
