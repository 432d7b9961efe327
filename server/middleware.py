"""ASGI middleware: the request body limit and per-route request counts.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one runs the app in
a separate task and buffers streamed responses, which gets in the way of
noticing client disconnects and of aborting their engine requests promptly.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genarm.server.errors import APIError, error_response
from genarm.server.metrics import ServerMetrics


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: at once from Content-Length, else (chunked
    uploads) as soon as the bytes read pass the limit, never buffering more."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> APIError:
        return APIError(413, f"request body larger than {self.max_bytes} bytes", code="too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(self._error())(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI passes HTTPExceptions from body reading on to the handlers.
                    raise HTTPException(413, self._error().message)
            return message

        await self.app(scope, counting_receive, send)


class RequestMetricsMiddleware:
    """Counts responses by route template (not raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        def count(status: int) -> None:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_requests.labels(route=route, status=str(status)).inc()

        async def recording_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                count(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            if not started:
                count(500)  # the server error middleware outside us answers it
            raise
