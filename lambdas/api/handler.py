"""api: the recommendation API on Lambda behind API Gateway (REST v1 and HTTP v2 events).

The handler only adapts: Mangum turns the API Gateway event into an ASGI request for the same
FastAPI app `recloop serve` runs. Lifespan is off (Mangum would run it on every invocation), so
the app loads the champion on its first request; the event sink is flushed before each return,
because Lambda freezes the process between invocations and a background thread would stall.

Environment: the RECLOOP_* settings (registry, features, candidates, events URIs).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mangum import Mangum

from recloop.config import get_settings
from recloop.serving.app import create_app

_FLUSH_SECONDS = 2.0


@lru_cache(maxsize=1)
def _adapter() -> Mangum:
    # Built on the first invocation, kept for the life of the execution environment.
    return Mangum(create_app(get_settings()), lifespan="off")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway proxy event in, proxy response out."""
    adapter = _adapter()
    runtime = adapter.app.state.runtime  # type: ignore[attr-defined]
    runtime.sink.start()
    try:
        response: dict[str, Any] = adapter(event, context)
    finally:
        flush = getattr(runtime.sink, "flush", None)
        if flush is not None:
            flush(_FLUSH_SECONDS)
    return response
