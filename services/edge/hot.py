"""The edge's ASGI app: chat completions straight to their handler, everything else to FastAPI.

``POST /v1/chat/completions`` (and ``/ai/v1/...``) is most of a gateway's traffic. Through the
framework a request passes some ten layers before its handler (the framework's error and
exception middleware, its telemetry and body-limit middleware, the router's matching, the
route's wrappers) and its reply passes most of them again; measured on this machine, a bare
FastAPI endpoint costs 0.09 ms of CPU a request where the same endpoint as a plain ASGI
callable costs 0.03 ms. Here the chat endpoint gets only what it needs: the edge's own
middleware (request id and access line, header limit; the audit middleware passes ``/v1``
anyway), then the handler, with the same error handling as every other route
(services/edge/errors.py): an exception before the reply has started becomes the error reply
in the caller's shape; after, it ends the connection as it would through the framework.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from services.edge import errors
from services.edge.access import AccessMiddleware
from services.edge.limits import HeaderLimitMiddleware
from services.edge.routes import chat

CHAT_PATHS = frozenset({"/v1/chat/completions", "/ai/v1/chat/completions"})


class HotPath:
    def __init__(self, app: FastAPI, max_header_bytes: int) -> None:
        self.app = app
        self._chat = AccessMiddleware(HeaderLimitMiddleware(self._chat_completions, max_header_bytes=max_header_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in CHAT_PATHS and scope["method"] == "POST":
            scope["app"] = self.app  # what the framework sets: handlers find the edge's state there
            await self._chat(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await chat.chat_completions(request)
            await response(scope, receive, sending)
        except Exception as exc:
            if started:
                raise  # the reply is under way: nothing else can be said on this connection
            error = await errors.respond_to(request, exc)
            await error(scope, receive, send)
