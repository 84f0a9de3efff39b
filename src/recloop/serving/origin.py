"""Only requests that came through CloudFront (and so through its WAF) reach the API.

API Gateway's execute-api endpoint is public: a client calling it directly would skip
CloudFront and the WAF (rate limits, managed rules). CloudFront adds a secret header to every
request it forwards (terraform/modules/serving: the origin's custom header, from Secrets
Manager); this pure ASGI middleware answers 403 to any request without it. The liveness path is
exempt: the load balancer's health checks come from inside the VPC, not through CloudFront.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from recloop.serving.asgi import error_body, send_error

HEADER = b"x-origin-verify"

_BODY = error_body("forbidden", "requests must come through the public endpoint (CloudFront)")


class OriginCheckMiddleware:
    """403 for HTTP requests whose X-Origin-Verify header is not `secret` (except `exempt`)."""

    def __init__(self, app: ASGIApp, secret: str, exempt: tuple[str, ...] = ("/healthz",)) -> None:
        if not secret:
            raise ValueError("the origin secret is empty")
        self.app = app
        self.secret = secret.encode()
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == HEADER and hmac.compare_digest(value, self.secret):
                await self.app(scope, receive, send)
                return
        await send_error(send, 403, _BODY)
