"""GET /users/sample: ids the served model knows, so the web page offers real users to pick."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from recloop.serving.deps import RuntimeDep
from recloop.serving.errors import ModelNotReadyError
from recloop.serving.schemas import UserSamplePublic

# Auth is added by create_app when a token is configured (no per-request cost otherwise).
router = APIRouter(tags=["users"])


@router.get("/users/sample", response_model=UserSamplePublic)
async def sample_users(
    runtime: RuntimeDep, n: Annotated[int, Query(ge=1, le=100)] = 20
) -> UserSamplePublic:
    """The first n users of the served model's training data (stable for one model version)."""
    model = runtime.holder.current
    if model is None:
        raise ModelNotReadyError("no model is loaded yet (nothing approved in the registry?)")
    ids = model.bundle.user_ids[:n]
    return UserSamplePublic(model_version=model.version, user_ids=[str(u) for u in ids])
