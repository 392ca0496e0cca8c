"""``GET /v1/models`` and ``GET /v1/models/{id}`` from the local route table."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.edge.prices import EdgePrices
from services.edge.state import EdgeDep, PrincipalDep
from shared.catalog import RouteTable
from shared.cost import describe
from shared.errors import MODEL_NOT_FOUND, GatewayError

router = APIRouter()

_CREATED = 1_730_419_200  # catalog epoch: models carry no creation date of their own


def _model(table: RouteTable, prices: EdgePrices, model_id: str) -> dict[str, Any]:
    entry = table.models.get(model_id)
    if entry is not None:
        route = table.resolve(model_id)
        price = prices.price(route, table) if route is not None else None
        return {
            "id": model_id,
            "object": "model",
            "created": _CREATED,
            "owned_by": entry.provider,
            "capabilities": entry.capabilities,
            "context_window": entry.context_window,
            "max_output_tokens": entry.max_output,
            # the price this gateway bills it at (one set at run time, else the catalog's)
            "pricing": describe(price, getattr(price, "version", "") or entry.price_version),
        }
    plan = table.plan(model_id)  # a virtual model: what every one of its targets can do
    targets = plan.targets if plan is not None else ()
    capabilities = [
        c for c in (targets[0].capabilities if targets else ()) if all(c in t.capabilities for t in targets)
    ]
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": "switchyard",
        "capabilities": capabilities,
        "targets": [t.target for t in targets],
    }


@router.get("/models")
async def list_models(edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    """The models this key may use (all of them for a key without ``allowed_models``)."""
    table = edge.routes.current()
    data = [_model(table, edge.prices, m) for m in table.live_models() if principal.may_use(m)]
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    table = edge.routes.current()
    name = table.canonical(model_id)[0]
    unknown = name not in table.virtual and (name not in table.models or table.models[name].retired is not None)
    if unknown or not principal.may_use(model_id, name):
        raise GatewayError(
            MODEL_NOT_FOUND, f"The model `{model_id}` does not exist or you do not have access to it.", param="model"
        )
    return _model(table, edge.prices, name)
