"""Operations: /healthz, /readyz, /version, /metrics and the web page at /."""

from __future__ import annotations

import os
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response

import recloop
from recloop.serving.deps import RuntimeDep
from recloop.serving.schemas import HealthPublic, ReadyPublic, VersionPublic

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    """Liveness: the process answers (no model, no backend involved)."""
    return HealthPublic()


@router.get("/readyz", response_model=ReadyPublic, responses={503: {"model": ReadyPublic}})
async def readyz(runtime: RuntimeDep) -> Response:
    """Readiness: a model is loaded. Backends are reported in the body, never make it 503.

    A feature store or candidate index outage degrades answers; were it to fail readiness, the
    load balancer would take every task out at once and nothing would answer at all.
    """
    await runtime.ensure_model()
    model = runtime.holder.current
    checks = {"model": "ok" if model is not None else "no model loaded"}
    ready = model is not None
    body = ReadyPublic(
        ready=ready,
        model_version=model.version if model else None,
        checks=checks,
        backends=runtime.backends.report(),
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/version", response_model=VersionPublic)
async def version(runtime: RuntimeDep) -> VersionPublic:
    """The model served, when it was loaded, from which registry."""
    model = runtime.holder.current
    return VersionPublic(
        model_version=model.version if model else None,
        family=model.family if model else None,
        loaded_at=model.loaded_at if model else None,
        registry=getattr(runtime.registry, "uri", None),
        swaps=runtime.holder.swaps,
        rejected_versions=sorted(runtime.holder.rejected),
        service_version=recloop.__version__,
        worker_pid=os.getpid(),
    )


@router.get("/metrics", response_class=Response)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus exposition."""
    return Response(runtime.metrics.render(), media_type=runtime.metrics.content_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    """The demo page: pick a user, see recommendations, click one, see them change."""
    page = files("recloop.serving").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)
