"""FastAPI dependencies as Annotated aliases; tests swap them with app.dependency_overrides.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, and a thread hop
per dependency cost more than the whole recommendation.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recloop.serving.errors import UnauthorizedError
from recloop.serving.runtime import Runtime
from recloop.serving.service import RecommendationService

_bearer = HTTPBearer(auto_error=False, description="only when RECLOOP_API_TOKEN is set")


async def get_runtime(request: Request) -> Runtime:
    """The Runtime the app was created with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_service(request: Request) -> RecommendationService:
    """The recommendation service, after a lazy model load where no watcher loop runs."""
    runtime: Runtime = request.app.state.runtime  # no nested dependency: this is the hot path
    await runtime.ensure_model()
    return runtime.service


async def require_token(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Check the bearer token when one is configured (API Gateway does auth in AWS)."""
    token = runtime.settings.api_token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("a valid bearer token is required")


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
AuthDep = Depends(require_token)
