"""The admin API (``/ai/...``): thin relays to the service that owns each resource."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from services.edge.auth import require_admin
from services.edge.body import read_json
from services.edge.state import EdgeDep, PrincipalDep
from shared import subjects
from shared.errors import INVALID_REQUEST, GatewayError
from shared.messages import (
    PROVIDER_KEY_CREATE_CONTEXT,
    ById,
    CatalogListing,
    ClientKeyCreate,
    ClientKeyCreated,
    ClientKeyInfo,
    ClientKeyList,
    EncryptionRotated,
    KeysLastUsed,
    ProviderKeyCreate,
    ProviderKeyCreateSealed,
    ProviderKeyInfo,
    ProviderKeyList,
    ProviderKeyPatch,
    ProviderKeyStatusChange,
    TransportKey,
)
from shared.sealing import seal

router = APIRouter()

_ADMIN_TIMEOUT = 15.0


class _Empty(BaseModel):
    pass


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    body = await read_json(request, 64 * 1024)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise GatewayError(INVALID_REQUEST, f"{param}: {first.get('msg')}", param=param) from exc


@router.post("/providers/keys", status_code=201)
async def create_provider_key(request: Request, edge: EdgeDep, principal: PrincipalDep) -> ProviderKeyInfo:
    require_admin(principal)
    req = await parse_body(request, ProviderKeyCreate)
    # The secret crosses the bus sealed to keyvault's transport key, never in plaintext.
    transport = await edge.bus.request(subjects.KEYVAULT_TRANSPORT_KEY, _Empty(), TransportKey, timeout=_ADMIN_TIMEOUT)
    sealed = ProviderKeyCreateSealed(
        provider=req.provider,
        label=req.label,
        sealed_api_key=seal(transport.public_key, req.api_key.encode(), context=PROVIDER_KEY_CREATE_CONTEXT),
    )
    return await edge.bus.request(subjects.PROVIDER_KEYS_CREATE, sealed, ProviderKeyInfo, timeout=_ADMIN_TIMEOUT)


@router.post("/providers/keys/rotate-encryption")
async def rotate_encryption(edge: EdgeDep, principal: PrincipalDep) -> EncryptionRotated:
    require_admin(principal)
    return await edge.bus.request(subjects.PROVIDER_KEYS_ROTATE, _Empty(), EncryptionRotated, timeout=120.0)


@router.get("/providers/keys")
async def list_provider_keys(edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    require_admin(principal)
    reply = await edge.bus.request(subjects.PROVIDER_KEYS_LIST, _Empty(), ProviderKeyList, timeout=_ADMIN_TIMEOUT)
    try:  # when each key last served a request, from metering; the listing works without it
        used = await edge.bus.request(subjects.USAGE_KEYS_LAST_USED, _Empty(), KeysLastUsed, timeout=5.0)
        for key in reply.data:
            key.last_used_at = used.last_used.get(key.id)
    except GatewayError:
        pass
    return {"object": "list", "data": [k.model_dump() for k in reply.data]}


@router.patch("/providers/keys/{key_id}")
async def patch_provider_key(key_id: str, request: Request, edge: EdgeDep, principal: PrincipalDep) -> ProviderKeyInfo:
    """Disable or (re-)enable a provider key; re-enabling also clears an ``invalid`` mark."""
    require_admin(principal)
    patch = await parse_body(request, ProviderKeyPatch)
    change = ProviderKeyStatusChange(id=key_id, status=patch.status, reason="set by an admin")
    return await edge.bus.request(subjects.PROVIDER_KEYS_STATUS, change, ProviderKeyInfo, timeout=_ADMIN_TIMEOUT)


@router.delete("/providers/keys/{key_id}")
async def delete_provider_key(key_id: str, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    require_admin(principal)
    info = await edge.bus.request(
        subjects.PROVIDER_KEYS_DELETE, ById(id=key_id), ProviderKeyInfo, timeout=_ADMIN_TIMEOUT
    )
    return {"id": info.id, "object": "provider_key", "deleted": True}


@router.post("/keys", status_code=201)
async def create_client_key(request: Request, edge: EdgeDep, principal: PrincipalDep) -> ClientKeyCreated:
    require_admin(principal)
    req = await parse_body(request, ClientKeyCreate)
    return await edge.bus.request(subjects.CLIENT_KEYS_CREATE, req, ClientKeyCreated, timeout=_ADMIN_TIMEOUT)


@router.get("/keys")
async def list_client_keys(edge: EdgeDep, principal: PrincipalDep, user: str | None = None) -> ClientKeyList:
    require_admin(principal)
    reply = await edge.bus.request(subjects.CLIENT_KEYS_LIST, _Empty(), ClientKeyList, timeout=_ADMIN_TIMEOUT)
    if user is not None:
        reply.data = [k for k in reply.data if k.user == user]
    return reply


@router.delete("/keys/{key_id}")
async def delete_client_key(key_id: str, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    require_admin(principal)
    info = await edge.bus.request(subjects.CLIENT_KEYS_DELETE, ById(id=key_id), ClientKeyInfo, timeout=_ADMIN_TIMEOUT)
    return {"id": info.id, "object": "api_key", "deleted": True}


@router.get("/models")
async def catalog(edge: EdgeDep, principal: PrincipalDep) -> CatalogListing:
    require_admin(principal)
    return await edge.bus.request(subjects.ROUTER_MODELS, _Empty(), CatalogListing, timeout=_ADMIN_TIMEOUT)
