"""A request-body size limit that answers 413 without reading an oversized body whole.

FastAPI reads and parses the whole body before a route runs, so a 200 MiB POST /events would
cost 200 MiB (and its JSON parse) in the worker. This pure ASGI middleware refuses a declared
Content-Length over the limit at once, and counts the bytes of a streamed (chunked) body,
answering 413 as soon as they pass the limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recloop.serving.asgi import error_body, send_error


def _message(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes} bytes; send fewer events per request"


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes` on the `paths` given (exact request paths)."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a streamed body: stop reading it here
                    raise HTTPException(413, _message(self.max_bytes))
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, send: Send) -> None:
        body = error_body("payload_too_large", _message(self.max_bytes))
        await send_error(send, 413, body, ((b"connection", b"close"),))
