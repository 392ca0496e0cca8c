"""``GET /metrics`` (Prometheus, every worker's samples added up) and ``GET /ai/status``
(admin: every service process heard on the bus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.edge.auth import require_admin
from services.edge.state import EdgeDep, PrincipalDep
from services.edge.status import StatusReport
from shared import metrics
from shared.errors import INVALID_API_KEY, GatewayError

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request, edge: EdgeDep) -> Response:
    token = edge.settings.metrics_token.get_secret_value()
    if not metrics.authorized(request.headers.get("authorization"), token):
        raise GatewayError(
            INVALID_API_KEY, "GET /metrics wants the metrics token (GATEWAY_METRICS_TOKEN) as a bearer token."
        )
    edge.metrics.flush()  # this worker's own requests, to the last one
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


@router.get("/ai/status")
async def status(edge: EdgeDep, principal: PrincipalDep) -> StatusReport:
    require_admin(principal)
    return edge.status.report()
