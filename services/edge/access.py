"""The request id and the access line of every HTTP request (pure ASGI, outermost).

The request id is the caller's ``X-Request-ID`` when it sends a usable one (up to 128 of
``A-Z a-z 0-9 . _ : -``), else a new ``req_...``. It is answered as ``x-request-id``, set for
every log line written while the request is served (shared/logs.py), and goes into the usage
event. When the request ends, one line on the ``switchyard.access`` logger says what happened:
method, path, status, latency and, for model requests, model, provider and tokens.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import logs

if TYPE_CHECKING:
    from services.edge.metered import RequestRecord

access_log = logging.getLogger("switchyard.access")

_USABLE = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
REQUEST_ID_HEADER = b"x-request-id"


def new_request_id() -> str:
    return "req_" + os.urandom(16).hex()


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        inbound = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                inbound = value if _USABLE.match(value) else None
                break
        request_id = inbound.decode() if inbound is not None else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["request_id_inbound"] = inbound is not None
        token = logs.request_id.set(request_id)
        status = 500
        header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            edge = getattr(scope["app"].state, "edge", None) if "app" in scope else None
            if edge is not None:
                edge.metrics.answered(scope["path"], status)
            if access_log.isEnabledFor(logging.INFO):
                _line(scope, status, (time.perf_counter() - started) * 1000, state.get("record"))
            logs.request_id.reset(token)


def _line(scope: Scope, status: int, latency_ms: float, record: RequestRecord | None) -> None:
    fields: dict[str, object] = {
        "method": scope["method"],
        "path": scope["path"][:512],
        "status": status,
        "latency_ms": round(latency_ms, 1),
    }
    event = record.outcome if record is not None else None
    if event is not None:
        fields.update(
            model=event.requested_model,
            provider=event.provider,
            prompt_tokens=event.prompt_tokens,
            completion_tokens=event.completion_tokens,
        )
        if event.status != status:  # a stream that failed after its 200 went out
            fields["outcome"] = event.status
        if event.error_type:
            fields["error_type"] = event.error_type
    client = scope.get("client")
    if client:
        fields["client"] = client[0]
    logs.info_line(access_log, f"{scope['method']} {scope['path'][:512]} {status}", fields)
