"""``/healthz`` (the process is alive) and ``/readyz`` (everything it depends on answers)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.edge.state import EdgeDep
from shared import subjects
from shared.errors import GatewayError
from shared.messages import Ping

router = APIRouter()

_PING_TIMEOUT = 1.0


class _Empty(BaseModel):
    pass


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, edge: EdgeDep) -> JSONResponse:
    if request.app.state.drain.started:  # on its way out: a load balancer should move on now
        return JSONResponse(
            {"status": "draining", "checks": {"draining": False}, "missing": ["draining"]}, status_code=503
        )
    checks: dict[str, Any] = {
        "nats": edge.bus.connected,
        "route_table": edge.routes.table is not None,
        # An edge keyvault refuses holds no provider keys: a load balancer should skip it.
        "edge_identity": edge.credentials.untrusted is None,
    }

    async def ping(name: str, subject: str) -> None:
        try:
            await edge.bus.request(subject, _Empty(), Ping, timeout=_PING_TIMEOUT)
            checks[name] = True
        except GatewayError:
            checks[name] = False

    if edge.bus.connected:
        await asyncio.gather(
            ping("router", subjects.ROUTER_PING),
            ping("keyvault", subjects.KEYVAULT_PING),
            ping("metering", subjects.METERING_PING),
        )
    else:
        checks.update(router=False, keyvault=False, metering=False)
    ready = all(checks.values())
    missing = [name for name, ok in checks.items() if not ok]
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks, "missing": missing},
        status_code=200 if ready else 503,
    )
