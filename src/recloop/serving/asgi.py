"""Answering from a pure ASGI middleware, before any route runs, in the API's error body."""

from __future__ import annotations

import orjson
from starlette.types import Send


def error_body(code: str, message: str) -> bytes:
    """The one error body every non-2xx answer carries (see schemas.ErrorPublic)."""
    return orjson.dumps({"error": {"code": code, "message": message, "fields": []}})


async def send_error(
    send: Send, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """Send a whole JSON error response (`body` from error_body)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
