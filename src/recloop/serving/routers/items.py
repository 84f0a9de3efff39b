"""GET /items/{item_id}/similar (item to item, for content pages)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from recloop.serving.deps import ServiceDep
from recloop.serving.schemas import RecommendedItemPublic, SimilarItemsPublic

# Auth is added by create_app when a token is configured (no per-request cost otherwise).
router = APIRouter(tags=["items"])


@router.get("/items/{item_id}/similar", response_model=SimilarItemsPublic)
async def similar_items(
    service: ServiceDep,
    item_id: Annotated[str, Path(min_length=1, max_length=128)],
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SimilarItemsPublic:
    """Items similar to this one; popular items when the model does not know it."""
    version, items, degraded = await service.similar(item_id, k)
    return SimilarItemsPublic(
        item_id=item_id,
        model_version=version,
        items=[
            RecommendedItemPublic(
                item_id=i.item_id,
                score=i.score,
                title=i.title,
                categories=list(i.categories),
                reason=i.reason,
            )
            for i in items
        ],
        degraded=degraded,
    )
