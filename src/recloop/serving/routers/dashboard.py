"""The monitoring dashboard at /dashboard: the page `recloop dashboard` writes, served live."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from recloop.serving.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    runtime: RuntimeDep,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="range ending now")] = 24.0,
) -> HTMLResponse:
    """Requests, latency, errors, events ingested and CTR per model version, with decisions."""
    # Imported here: pandas and the lake readers load on the first visit, not in every worker.
    from recloop.monitoring.dashboard import dashboard_page

    page = await asyncio.to_thread(dashboard_page, runtime.settings, hours)
    return HTMLResponse(page)
