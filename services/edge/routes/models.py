"""``GET /v1/models`` and ``GET /v1/models/{id}`` from the local route table."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.edge.state import EdgeDep, PrincipalDep
from shared.catalog import RouteTable
from shared.errors import MODEL_NOT_FOUND, GatewayError

router = APIRouter()

_CREATED = 1_730_419_200  # catalog epoch: models carry no creation date of their own


def _model(table: RouteTable, model_id: str) -> dict[str, Any]:
    entry = table.models[model_id]
    return {
        "id": model_id,
        "object": "model",
        "created": _CREATED,
        "owned_by": entry.provider,
        "capabilities": entry.capabilities,
    }


@router.get("/models")
async def list_models(edge: EdgeDep, _: PrincipalDep) -> dict[str, Any]:
    table = edge.routes.current()
    return {"object": "list", "data": [_model(table, m) for m in sorted(table.models)]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, edge: EdgeDep, _: PrincipalDep) -> dict[str, Any]:
    table = edge.routes.current()
    name = table.aliases.get(model_id, model_id)
    if name not in table.models:
        raise GatewayError(
            MODEL_NOT_FOUND, f"The model `{model_id}` does not exist or you do not have access to it.", param="model"
        )
    return _model(table, name)
