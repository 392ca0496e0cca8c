"""Builds the edge ASGI app from its settings; nothing happens at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.edge import errors, openapi, ui
from services.edge.access import AccessMiddleware
from services.edge.audit import AuditMiddleware
from services.edge.limits import HeaderLimitMiddleware
from services.edge.routes import (
    admin,
    chat,
    embeddings,
    health,
    limits,
    messages,
    models,
    observability,
    responses,
    usage,
)
from services.edge.server import Drain
from services.edge.settings import EdgeSettings
from services.edge.state import Edge
from shared.version import VERSION


def create_app(settings: EdgeSettings, drain: Drain | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        edge = Edge.build(settings)
        app.state.edge = edge
        await edge.start()
        # Start-up objects (routes, models, caches) are long-lived: keep them out of the
        # collector's way so its pauses stay short on the request path.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await edge.stop()

    app = FastAPI(
        title="Switchyard",
        version=VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The edge's traces and metrics are its own (services/edge/tracing.py, metrics.py):
        # FastAPI's would double them, and asking whether they are on costs each request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.drain = drain or Drain()
    errors.install(app)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(HeaderLimitMiddleware, max_header_bytes=settings.max_header_bytes)
    app.add_middleware(AccessMiddleware)  # outermost: the request id is set for everything within
    for prefix in ("/v1", "/ai/v1"):
        app.router.add_route(f"{prefix}/chat/completions", chat.chat_completions, methods=["POST"])
        app.router.add_route(f"{prefix}/embeddings", embeddings.embeddings, methods=["POST"])
        app.router.add_route(f"{prefix}/messages", messages.messages, methods=["POST"])
        app.router.add_route(f"{prefix}/messages/count_tokens", messages.count_tokens, methods=["POST"])
        app.router.add_route(f"{prefix}/responses", responses.create, methods=["POST"])
        app.router.add_route(f"{prefix}/responses/{{response_id}}", responses.retrieve, methods=["GET"])
        app.router.add_route(f"{prefix}/responses/{{response_id}}", responses.delete, methods=["DELETE"])
        app.router.add_route(f"{prefix}/responses/{{response_id}}/input_items", responses.input_items, methods=["GET"])
        app.include_router(models.router, prefix=prefix)
    app.include_router(admin.router, prefix="/ai")
    app.include_router(usage.router, prefix="/ai")
    app.include_router(limits.router, prefix="/ai")
    app.include_router(health.router)
    app.include_router(observability.router)
    ui.mount(app)
    openapi.install(app)
    return app
