"""Request limits checked before any work: the total size of the request headers.

Bodies are limited where they are read (``body.py``); JSON nesting is bounded by the parser
(deeper than the interpreter's recursion limit is a 400, never a 500).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import TOO_LARGE, GatewayError


class HeaderLimitMiddleware:
    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope["headers"])
            if size > self.max_header_bytes:
                err = GatewayError(TOO_LARGE, f"Request headers are larger than {self.max_header_bytes} bytes.")
                body = err.model_json()
                await send(
                    {
                        "type": "http.response.start",
                        "status": err.status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
