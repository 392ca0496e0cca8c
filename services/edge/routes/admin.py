"""The admin API (``/ai/...``): thin relays to the service that owns each resource."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ValidationError

from services.edge import failover
from services.edge.auth import require_admin
from services.edge.body import read_json
from services.edge.openapi import request_body
from services.edge.spend import budget_status
from services.edge.state import Edge, EdgeDep, PrincipalDep
from services.edge.sync import change_everywhere
from shared import subjects
from shared.catalog import Route, RouteTable
from shared.cost import PriceSpec, describe
from shared.errors import INVALID_REQUEST, MODEL_NOT_FOUND, NOT_FOUND, GatewayError
from shared.gateway_config import NAME, Account, VirtualModel
from shared.messages import (
    CLIENT_KEY_REPLY_CONTEXT,
    PROJECT_NAME,
    PROVIDER_KEY_CREATE_CONTEXT,
    AccountObject,
    AccountPut,
    ById,
    ByName,
    CatalogListing,
    ClearableKeyField,
    ClientKeyCreate,
    ClientKeyCreated,
    ClientKeyCreatedSealed,
    ClientKeyCreateSealed,
    ClientKeyInfo,
    ClientKeyList,
    ClientKeyPatch,
    ClientKeyPatchRequest,
    ConfigObjects,
    EncryptionRotated,
    KeysLastUsed,
    LimitField,
    PriceOut,
    Project,
    ProjectCreate,
    ProjectList,
    ProjectPatch,
    ProjectPatchRequest,
    ProviderKeyCreate,
    ProviderKeyCreateSealed,
    ProviderKeyInfo,
    ProviderKeyList,
    ProviderKeyPatch,
    ProviderKeyStatusChange,
    RouteObject,
    RoutePut,
    TransportKey,
)
from shared.sealing import Recipient, seal

router = APIRouter()

# Ids and names in a path: one longer than any the gateway makes, or with characters none of
# them has, is a 400 naming the part (before, the message to keyvault refused it, or Vault
# refused the path it made, and the caller got a 500).
PathId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]
PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=NAME)]
PathProject = Annotated[str, Path(min_length=1, max_length=64, pattern=PROJECT_NAME)]

_ADMIN_TIMEOUT = 15.0


class _Empty(BaseModel):
    pass


async def parse_body(request: Request, model: type[BaseModel], limit: int = 64 * 1024) -> Any:
    body = await read_json(request, limit, request.app.state.edge.settings.body_timeout)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise GatewayError(INVALID_REQUEST, f"{param}: {first.get('msg')}", param=param) from exc


@router.post("/providers/keys", status_code=201, openapi_extra=request_body(ProviderKeyCreate))
async def create_provider_key(
    request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> ProviderKeyInfo:
    require_admin(principal)
    req = await parse_body(request, ProviderKeyCreate)
    # The secret crosses the bus sealed to keyvault's transport key, never in plaintext.
    transport = await edge.bus.request(subjects.KEYVAULT_TRANSPORT_KEY, _Empty(), TransportKey, timeout=_ADMIN_TIMEOUT)
    sealed = ProviderKeyCreateSealed(
        provider=req.provider,
        label=req.label,
        sealed_api_key=seal(transport.public_key, req.api_key.encode(), context=PROVIDER_KEY_CREATE_CONTEXT),
    )
    info = await change_everywhere(
        edge.bus, response, "provider_keys", subjects.PROVIDER_KEYS_CREATE, sealed, ProviderKeyInfo
    )
    return info


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


@router.patch("/providers/keys/{key_id}", openapi_extra=request_body(ProviderKeyPatch))
async def patch_provider_key(
    key_id: PathId, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> ProviderKeyInfo:
    """Disable or (re-)enable a provider key; re-enabling also clears an ``invalid`` mark."""
    require_admin(principal)
    patch = await parse_body(request, ProviderKeyPatch)
    change = ProviderKeyStatusChange(id=key_id, status=patch.status, reason="set by an admin")
    info = await change_everywhere(
        edge.bus, response, "provider_keys", subjects.PROVIDER_KEYS_STATUS, change, ProviderKeyInfo
    )
    return info


@router.delete("/providers/keys/{key_id}")
async def delete_provider_key(
    key_id: PathId, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_admin(principal)
    info = await change_everywhere(
        edge.bus, response, "provider_keys", subjects.PROVIDER_KEYS_DELETE, ById(id=key_id), ProviderKeyInfo
    )
    return {"id": info.id, "object": "provider_key", "deleted": True}


@router.post("/keys", status_code=201, openapi_extra=request_body(ClientKeyCreate))
async def create_client_key(
    request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> ClientKeyCreated:
    require_admin(principal)
    req = await parse_body(request, ClientKeyCreate)
    reply_key = Recipient()  # this request's own: the new secret crosses the bus sealed to it
    asked = ClientKeyCreateSealed(create=req, seal_to=reply_key.public_key_b64)
    made = await change_everywhere(
        edge.bus, response, "client_keys", subjects.CLIENT_KEYS_CREATE, asked, ClientKeyCreatedSealed
    )
    secret = reply_key.open(made.sealed_key, context=CLIENT_KEY_REPLY_CONTEXT).decode()
    return ClientKeyCreated(key=secret, **made.model_dump(exclude={"sealed_key", "object"}))


@router.get("/keys")
async def list_client_keys(
    edge: EdgeDep, principal: PrincipalDep, user: str | None = None, project: str | None = None
) -> ClientKeyList:
    """Every key for the admin; a user key sees its own user's keys and nothing else."""
    reply = await edge.bus.request(subjects.CLIENT_KEYS_LIST, _Empty(), ClientKeyList, timeout=_ADMIN_TIMEOUT)
    if principal.role != "admin":
        user = principal.user
    reply.data = [
        k for k in reply.data if (user is None or k.user == user) and (project is None or k.project == project)
    ]
    return reply


@router.get("/keys/{key_id}")
async def get_client_key(key_id: PathId, edge: EdgeDep, principal: PrincipalDep) -> ClientKeyInfo:
    key = await edge.bus.request(subjects.CLIENT_KEYS_GET, ById(id=key_id), ClientKeyInfo, timeout=_ADMIN_TIMEOUT)
    if principal.role != "admin" and key.user != principal.user:
        raise GatewayError(NOT_FOUND, f"no client key {key_id!r}", param="id")  # another user's is not there either
    key.budget = await budget_status(edge.bus, edge.quotas, "key", key.id, key)
    return key


@router.patch("/keys/{key_id}", openapi_extra=request_body(ClientKeyPatch))
async def patch_client_key(
    key_id: PathId, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> ClientKeyInfo:
    """Change a key's name, description, project, expiry, allowed models or status
    (``active`` / ``disabled``); in force on every edge when the call returns."""
    require_admin(principal)
    patch = await parse_body(request, ClientKeyPatch)
    nullable = get_args(ClearableKeyField)
    cleared = [f for f in nullable if f in patch.model_fields_set and getattr(patch, f) is None]
    change = ClientKeyPatchRequest(id=key_id, patch=patch, cleared=cleared)
    info = await change_everywhere(edge.bus, response, "client_keys", subjects.CLIENT_KEYS_PATCH, change, ClientKeyInfo)
    return info


@router.delete("/keys/{key_id}")
async def delete_client_key(
    key_id: PathId, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_admin(principal)
    info = await change_everywhere(
        edge.bus, response, "client_keys", subjects.CLIENT_KEYS_DELETE, ById(id=key_id), ClientKeyInfo
    )
    return {"id": info.id, "object": "api_key", "deleted": True}


# --- projects ----------------------------------------------------------------------------------


@router.post("/projects", status_code=201, openapi_extra=request_body(ProjectCreate))
async def create_project(request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep) -> Project:
    require_admin(principal)
    req = await parse_body(request, ProjectCreate)
    return await change_everywhere(edge.bus, response, "projects", subjects.PROJECTS_CREATE, req, Project)


@router.get("/projects")
async def list_projects(edge: EdgeDep, principal: PrincipalDep) -> ProjectList:
    require_admin(principal)
    return await edge.bus.request(subjects.PROJECTS_LIST, _Empty(), ProjectList, timeout=_ADMIN_TIMEOUT)


@router.get("/projects/{name}")
async def get_project(name: PathProject, edge: EdgeDep, principal: PrincipalDep) -> Project:
    require_admin(principal)
    listing = await edge.bus.request(subjects.PROJECTS_LIST, _Empty(), ProjectList, timeout=_ADMIN_TIMEOUT)
    for project in listing.data:
        if project.name == name:
            project.budget = await budget_status(edge.bus, edge.quotas, "project", name, project)
            return project
    raise GatewayError(NOT_FOUND, f"No project {name!r}.", param="name")


@router.patch("/projects/{name}", openapi_extra=request_body(ProjectPatch))
async def patch_project(
    name: PathProject, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> Project:
    """Change a project's description or limits (``null`` lifts a limit); in force on every
    edge when the call returns."""
    require_admin(principal)
    patch = await parse_body(request, ProjectPatch)
    cleared = [f for f in get_args(LimitField) if f in patch.model_fields_set and getattr(patch, f) is None]
    change = ProjectPatchRequest(name=name, patch=patch, cleared=cleared)
    return await change_everywhere(edge.bus, response, "projects", subjects.PROJECTS_PATCH, change, Project)


@router.delete("/projects/{name}")
async def delete_project(
    name: PathProject, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> dict[str, Any]:
    require_admin(principal)
    await change_everywhere(edge.bus, response, "projects", subjects.PROJECTS_DELETE, ByName(name=name), Project)
    return {"id": name, "object": "project", "deleted": True}


@router.get("/models")
async def catalog(edge: EdgeDep, principal: PrincipalDep) -> CatalogListing:
    require_admin(principal)
    return await edge.bus.request(subjects.ROUTER_MODELS, _Empty(), CatalogListing, timeout=_ADMIN_TIMEOUT)


# --- routes (virtual models) and named accounts ------------------------------------------------


@router.get("/routes")
async def list_routes(edge: EdgeDep, principal: PrincipalDep) -> ConfigObjects:
    require_admin(principal)
    return await edge.bus.request(subjects.ROUTES_LIST, _Empty(), ConfigObjects, timeout=_ADMIN_TIMEOUT)


@router.get("/routes/explain")
async def explain_route(edge: EdgeDep, principal: PrincipalDep, model: str) -> dict[str, Any]:
    """Which targets ``model`` resolves to, in the order they would be tried, with each one's
    circuit state and keys in hand; nothing is called."""
    require_admin(principal)
    table = edge.routes.current()
    plan = table.plan(model)
    if plan is None or not plan.targets:
        raise GatewayError(MODEL_NOT_FOUND, f"The model `{model}` does not route anywhere.", param="model")
    ordered = failover.order(plan, table) if plan.strategy != "weighted" else list(plan.targets)
    skipped = [t for t in plan.targets if t not in ordered]
    rows = []
    for route in [*ordered, *skipped]:
        circuit = table.circuits.get(route.target)
        price = edge.prices.price(route, table)
        rows.append(
            {
                "target": route.target,
                "provider": route.provider,
                "account": route.account or None,
                "model": route.model,
                "upstream_model": route.upstream_model,
                "circuit": circuit.model_dump() if circuit else {"state": "closed"},
                "skipped": route in skipped,
                "provider_keys": edge.credentials.usable(route.provider),
                "blended_price_usd_per_mtok": table.blended_price(route),
                "price": describe(price, _version(price, table, route)),  # None: nothing prices it
            }
        )
    return {
        "object": "route.explanation",
        "model": model,
        "resolved": plan.model,
        "virtual": plan.virtual,
        "deprecated_successor": plan.successor,
        "strategy": plan.strategy,
        "weights": list(plan.weights) or None,
        "retry": plan.retry.model_dump(),
        "timeouts": plan.timeouts.model_dump(),
        "targets": rows,
    }


def _version(price: PriceSpec | None, table: RouteTable, route: Route) -> str:
    """Which price a target is billed at: one set at run time has its own version."""
    if isinstance(price, PriceOut):
        return price.version
    entry = table.models.get(route.model)
    return entry.price_version if entry is not None else ""


async def _one(edge: Edge, subject: str, name: str, kind: str) -> RouteObject | AccountObject:
    listing = await edge.bus.request(subject, _Empty(), ConfigObjects, timeout=_ADMIN_TIMEOUT)
    for item in listing.data:
        if item.name == name:
            return item
    raise GatewayError(NOT_FOUND, f"No {kind} named {name!r}.")


@router.get("/routes/{name}")
async def get_route(name: PathName, edge: EdgeDep, principal: PrincipalDep) -> RouteObject | AccountObject:
    require_admin(principal)
    return await _one(edge, subjects.ROUTES_LIST, name, "route")


@router.put("/routes/{name}", openapi_extra=request_body(VirtualModel))
async def put_route(
    name: PathName, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> RouteObject:
    require_admin(principal)
    spec = await parse_body(request, VirtualModel)
    route = await change_everywhere(
        edge.bus, response, "routes", subjects.ROUTES_PUT, RoutePut(name=name, spec=spec), RouteObject
    )
    return route


@router.delete("/routes/{name}")
async def delete_route(name: PathName, response: Response, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    require_admin(principal)
    await change_everywhere(edge.bus, response, "routes", subjects.ROUTES_DELETE, ByName(name=name), RouteObject)
    return {"id": name, "object": "route", "deleted": True}


@router.get("/accounts")
async def list_accounts(edge: EdgeDep, principal: PrincipalDep) -> ConfigObjects:
    require_admin(principal)
    return await edge.bus.request(subjects.ACCOUNTS_LIST, _Empty(), ConfigObjects, timeout=_ADMIN_TIMEOUT)


@router.get("/accounts/{name}")
async def get_account(name: PathName, edge: EdgeDep, principal: PrincipalDep) -> RouteObject | AccountObject:
    require_admin(principal)
    return await _one(edge, subjects.ACCOUNTS_LIST, name, "account")


@router.put("/accounts/{name}", openapi_extra=request_body(Account))
async def put_account(
    name: PathName, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> AccountObject:
    require_admin(principal)
    spec = await parse_body(request, Account)
    account = await change_everywhere(
        edge.bus, response, "routes", subjects.ACCOUNTS_PUT, AccountPut(name=name, spec=spec), AccountObject
    )
    return account


@router.delete("/accounts/{name}")
async def delete_account(name: PathName, response: Response, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    require_admin(principal)
    await change_everywhere(edge.bus, response, "routes", subjects.ACCOUNTS_DELETE, ByName(name=name), AccountObject)
    return {"id": name, "object": "account", "deleted": True}
