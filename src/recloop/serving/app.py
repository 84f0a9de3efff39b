"""The FastAPI app factory: `create_app(settings)`.

Errors have one body (`{"error": {"code", "message", "fields"}}`): bad input is a 422 with a
message per field, recloop's own errors map to 4xx/503 here in one place, and anything else is
a 500 with no internals in the body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import recloop
from recloop.config import Settings, get_settings
from recloop.errors import ConfigError, NotFoundError, RecloopError
from recloop.monitoring.service_metrics import SnapshotRecorder
from recloop.serving.bodylimit import BodyLimitMiddleware
from recloop.serving.deps import AuthDep
from recloop.serving.errors import (
    BackendError,
    InvalidRequestError,
    ModelNotReadyError,
    SinkFullError,
    UnauthorizedError,
)
from recloop.serving.metrics import ServingMetrics
from recloop.serving.origin import OriginCheckMiddleware
from recloop.serving.routers import dashboard, events, items, ops, recommendations, users
from recloop.serving.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The API for `settings` (default: the environment's); tests may hand in a Runtime."""
    settings = settings or get_settings()
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="recloop",
        version=recloop.__version__,
        description="Recommendations that keep themselves fresh.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # The token check exists only when a token is configured: no per-request cost otherwise.
    guarded = [AuthDep] if settings.api_token is not None else []
    for router in (
        recommendations.router,
        events.router,
        items.router,
        users.router,
        dashboard.router,
    ):
        app.include_router(router, dependencies=guarded)
    app.include_router(ops.router)
    if settings.api_token is None:  # the token check is a FastAPI dependency: keep its route
        app.router.routes.insert(0, recommendations.LeanRoute())
    _install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.events_max_body_bytes, paths=("/events",)
    )
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, recorder=runtime.snapshots)
    if settings.origin_secret is not None:  # AWS: only CloudFront's requests (origin.py)
        app.add_middleware(OriginCheckMiddleware, secret=settings.origin_secret.get_secret_value())
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory (`recloop serve`): settings from RECLOOP_* variables."""
    return create_app(get_settings())


def _error(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": ".".join(str(part) for part in err.get("loc", ())),
                "message": str(err.get("msg", "invalid")),
            }
            for err in exc.errors()
        ]
        message = "the request is not valid"
        if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
            # A JSON body sent as text/plain (sendBeacon, curl -d) reads as "not an object":
            # name the real cause.
            message += "; send the body as JSON with Content-Type: application/json"
        return _error(422, "invalid_request", message, fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RecloopError)
    async def recloop_error(request: Request, exc: RecloopError) -> JSONResponse:
        if isinstance(exc, InvalidRequestError):
            fields = [{"field": exc.field, "message": exc.message}]
            return _error(422, "invalid_request", "the request is not valid", fields)
        status, code, headers = _status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(status, code, str(exc), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error; see the server log")


def _status_of(exc: RecloopError) -> tuple[int, str, dict[str, str] | None]:
    """The one place where recloop's errors become HTTP statuses."""
    if isinstance(exc, SinkFullError):
        return 503, "queue_full", {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, ModelNotReadyError):
        return 503, "model_not_ready", {"Retry-After": "5"}
    if isinstance(exc, BackendError):
        return 503, "backend_unavailable", {"Retry-After": "1"}
    if isinstance(exc, UnauthorizedError):
        return 401, "unauthorized", {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, NotFoundError):
        return 404, "not_found", None
    if isinstance(exc, ConfigError):
        return 500, "misconfigured", None
    return 400, "bad_request", None


class MetricsMiddleware:
    """Counts requests by route template and status, and times them (pure ASGI, cheap)."""

    def __init__(
        self, app: ASGIApp, metrics: ServingMetrics, recorder: SnapshotRecorder | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(seconds)
            if self.recorder is not None:
                self.recorder.record(seconds, status)
