"""GET /recommendations."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from recloop.events import Id
from recloop.serving.errors import InvalidRequestError
from recloop.serving.schemas import RecommendationsPublic

# Auth is added by create_app when a token is configured (no per-request cost otherwise).
router = APIRouter(tags=["recommendations"])


class RecommendationQuery(BaseModel):
    """The query string of GET /recommendations (validated in one pass)."""

    user_id: Id | None = Field(None, description="signed-in user")
    visitor_id: Id | None = Field(None, description="anonymous visitor id")
    k: int = Field(10, ge=1, le=100)
    exclude_seen: bool = True
    category: str | None = Field(None, min_length=1, max_length=128)


def _query_parameters() -> list[dict[str, Any]]:
    """The OpenAPI description of RecommendationQuery's fields as query parameters."""
    schema = RecommendationQuery.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def query_pairs(raw: str) -> dict[str, str]:
    """dict(parse_qsl(raw, keep_blank_values=True)): the last of a repeated name wins.

    Without '%' or '+' nothing needs unquoting, and a split is ~3 us cheaper than parse_qsl
    (tested equal on generated query strings).
    """
    if "%" in raw or "+" in raw:
        return dict(parse_qsl(raw, keep_blank_values=True))
    pairs: dict[str, str] = {}
    for field in raw.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs[name] = value
    return pairs


def _parse_query(scope: Scope) -> RecommendationQuery:
    """One pydantic validation of the query string; errors become the usual 422."""
    try:
        # Parsed as Starlette's QueryParams does (latin-1 bytes, blank values kept, the last
        # of a repeated name wins), without building its multi-dict on the hot path.
        raw = scope["query_string"].decode("latin-1")
        return RecommendationQuery.model_validate(query_pairs(raw))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from exc


async def _answer(scope: Scope) -> bytes:
    """The JSON body of GET /recommendations for this request's query string."""
    runtime = scope["app"].state.runtime
    await runtime.ensure_model()
    query = _parse_query(scope)
    actor = query.user_id or query.visitor_id
    if actor is None:
        raise InvalidRequestError("query.user_id", "give user_id or visitor_id")
    result = await runtime.service.recommend(
        actor,
        k=query.k,
        exclude_seen=query.exclude_seen,
        category=query.category,
        signed_in=query.user_id is not None,
    )
    # Serialised here, once: the hot path skips FastAPI's second validation of the response
    # model (the schema on the route still documents it, and the tests check the shape).
    body = {
        "rec_id": result.rec_id,
        "user_id": result.user_id,
        "model_version": result.model_version,
        "items": result.items,  # Ranked dataclasses: orjson writes their fields in order
        "degraded": result.degraded,
        "degraded_reasons": result.degraded_reasons,
        "source": result.source,
    }
    return orjson.dumps(body)


# The query string is parsed by hand and documented through openapi_extra: FastAPI's own
# parameter handling cost ~0.25 ms of a ~1 ms request (see docs/benchmarks.md, Serving).
@router.get(
    "/recommendations",
    response_model=RecommendationsPublic,
    openapi_extra={"parameters": _query_parameters()},
)
async def recommendations(request: Request) -> Response:
    """Top k items for a user or an anonymous visitor (cold start when unknown, never an error)."""
    return Response(await _answer(request.scope), media_type="application/json")


class LeanRoute(Route):
    """GET /recommendations as a plain Starlette route, in front of the documented FastAPI one.

    FastAPI's request handling (dependency solving, its response path) cost ~0.07 ms of the
    request; the handler above needs none of it. The FastAPI route stays for the OpenAPI
    schema and for apps with a bearer token, whose check is a FastAPI dependency. Errors still
    go through the app's handlers, and the metrics middleware sees the same route template.
    """

    def __init__(self) -> None:
        super().__init__("/recommendations", recommendations, methods=["GET"])
        self.methods = {"GET"}  # as the documented route: HEAD is a 405 there too
        self.include_in_schema = False
        # A plain ASGI handler: no Request, Response or per-route exception wrapper (~10 us);
        # an error raised before the response starts still reaches the app's handlers.
        self.app = self._respond

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _answer(scope)
        await send({"type": "http.response.start", "status": 200, "headers": _headers(body)})
        await send({"type": "http.response.body", "body": body})

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
