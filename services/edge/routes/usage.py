"""Usage, prices and metering state (``/ai/usage/...``, ``/ai/prices``), answered by metering.

Admin keys see everything; a user key sees only its own usage, whatever filter it sends.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from services.edge.auth import require_admin
from services.edge.openapi import request_body
from services.edge.routes.admin import parse_body
from services.edge.state import EdgeDep, PrincipalDep
from services.edge.sync import change_everywhere
from shared import subjects
from shared.catalog import load_overlay
from shared.catalog_build import dataset_ids
from shared.errors import INVALID_REQUEST, GatewayError
from shared.messages import (
    AuditLog,
    AuditQuery,
    CatalogLoad,
    CatalogLoaded,
    GroupBy,
    MeteringStatus,
    PriceIn,
    PriceList,
    PriceOut,
    RecostQuery,
    RecostReport,
    RequestLog,
    RequestsQuery,
    TimeseriesQuery,
    UsageFilter,
    UsagePerformance,
    UsageSummary,
    UsageTimeseries,
)
from shared.price_dataset import from_json

router = APIRouter()

_TIMEOUT = 30.0

Period = Annotated[Literal["24h", "7d", "30d"] | None, Query()]
From = Annotated[datetime | None, Query(alias="from", description="ISO 8601 or seconds since the epoch")]
To = Annotated[datetime | None, Query(alias="to")]
Opt = Annotated[str | None, Query(max_length=256)]


class _Empty(BaseModel):
    pass


async def usage_filter(
    principal: PrincipalDep,
    period: Period = None,
    start: From = None,
    end: To = None,
    user: Opt = None,
    key: Opt = None,
    model: Opt = None,
    provider: Opt = None,
) -> dict[str, object]:
    """The query parameters every usage endpoint shares."""
    if principal.role != "admin":
        user, key = principal.user, None  # own usage only
    for name, moment in (("from", start), ("to", end)):
        if moment is not None and moment.timestamp() < 0:
            raise GatewayError(INVALID_REQUEST, f"'{name}' must not be before 1970-01-01T00:00:00Z.", param=name)
    return {
        "period": period,
        "start": start.timestamp() if start else None,
        "end": end.timestamp() if end else None,
        "user": user,
        "client_key_id": key,
        "model": model,
        "provider": provider,
    }


FilterDep = Annotated[dict[str, object], Depends(usage_filter)]


@router.get("/usage/summary")
async def summary(edge: EdgeDep, fields: FilterDep) -> UsageSummary:
    query = UsageFilter.model_validate(fields)
    return await edge.bus.request(subjects.USAGE_SUMMARY, query, UsageSummary, timeout=_TIMEOUT)


@router.get("/usage/timeseries")
async def timeseries(
    edge: EdgeDep,
    fields: FilterDep,
    granularity: Literal["hour", "day"] = "hour",
    group_by: GroupBy | None = None,
) -> UsageTimeseries:
    query = TimeseriesQuery.model_validate(fields | {"granularity": granularity, "group_by": group_by})
    return await edge.bus.request(subjects.USAGE_TIMESERIES, query, UsageTimeseries, timeout=_TIMEOUT)


@router.get("/usage/performance")
async def performance(edge: EdgeDep, fields: FilterDep) -> UsagePerformance:
    """Error rate and latency percentiles, overall and per model."""
    query = UsageFilter.model_validate(fields)
    return await edge.bus.request(subjects.USAGE_PERFORMANCE, query, UsagePerformance, timeout=_TIMEOUT)


@router.get("/usage/requests")
async def requests(
    edge: EdgeDep,
    fields: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
) -> RequestLog:
    query = RequestsQuery.model_validate(fields | {"limit": limit, "before": before, "status": status})
    return await edge.bus.request(subjects.USAGE_REQUESTS, query, RequestLog, timeout=_TIMEOUT)


@router.post("/usage/recost", openapi_extra=request_body(RecostQuery))
async def recost(request: Request, edge: EdgeDep, principal: PrincipalDep) -> RecostReport:
    """Re-price the stored usage of a window at the prices in force (after a correction with an
    effective time in the past): new correction rows, history kept (services/metering/recost.py)."""
    require_admin(principal)
    query = await parse_body(request, RecostQuery)
    return await edge.bus.request(subjects.USAGE_RECOST, query, RecostReport, timeout=_TIMEOUT)


@router.get("/usage/status")
async def status(edge: EdgeDep, principal: PrincipalDep) -> MeteringStatus:
    require_admin(principal)
    return await edge.bus.request(subjects.METERING_STATUS, _Empty(), MeteringStatus, timeout=_TIMEOUT)


@router.get("/prices")
async def list_prices(edge: EdgeDep, principal: PrincipalDep) -> PriceList:
    require_admin(principal)
    return await edge.bus.request(subjects.PRICES_LIST, _Empty(), PriceList, timeout=_TIMEOUT)


@router.post("/prices", status_code=201, openapi_extra=request_body(PriceIn))
async def set_price(request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep) -> PriceOut:
    """A price for a model, in force in metering and on every live edge when this answers."""
    require_admin(principal)
    body = await parse_body(request, PriceIn)
    return await change_everywhere(edge.bus, response, "prices", subjects.PRICES_SET, body, PriceOut)


@router.post("/catalog", openapi_extra=request_body(CatalogLoad))
async def load_catalog(request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep) -> CatalogLoaded:
    """A newer pricing dataset (a genai-prices data.json, or a catalog_prices.json), prices,
    or the models budgets may admit unpriced; in force in metering and on every live edge
    when this answers, from ``effective_from`` (default now). Earlier requests keep their cost."""
    require_admin(principal)
    body: CatalogLoad = await parse_body(request, CatalogLoad, edge.settings.max_body_bytes)
    if isinstance(body.dataset, list):  # the whole dataset: only the catalog's providers travel on
        raw = body.dataset
        try:
            dataset = await asyncio.to_thread(
                from_json, raw, dataset_ids(load_overlay()), body.version or "genai-prices data.json"
            )
        except ValueError as exc:
            raise GatewayError(INVALID_REQUEST, str(exc).splitlines()[0], param="dataset") from exc
        body = body.model_copy(update={"dataset": dataset.model_dump(mode="json", exclude_defaults=True)})
    return await change_everywhere(edge.bus, response, "prices", subjects.CATALOG_LOAD, body, CatalogLoaded)


@router.get("/audit")
async def audit(
    edge: EdgeDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=256)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
) -> AuditLog:
    """Recent admin actions and provider-key decryptions (admin only)."""
    require_admin(principal)
    query = AuditQuery(limit=limit, action=action, actor=actor)
    return await edge.bus.request(subjects.AUDIT_LIST, query, AuditLog, timeout=_TIMEOUT)
