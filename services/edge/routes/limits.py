"""Users' limits (``/ai/users``) and budgets this period (``/ai/usage/budgets``).

A user exists wherever a client key names it; ``PUT /ai/users/{name}`` gives it limits and a
budget that all its keys count against, in force on every edge when the call returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from services.edge.auth import require_admin
from services.edge.openapi import request_body
from services.edge.routes.admin import parse_body
from services.edge.spend import budget_status
from services.edge.state import EdgeDep, PrincipalDep
from services.edge.sync import change_everywhere
from shared import subjects
from shared.errors import NOT_FOUND, PERMISSION, GatewayError
from shared.limits import LimitFields, Scope
from shared.messages import (
    BudgetStatus,
    ById,
    ByUser,
    ClientKeyInfo,
    ClientKeyList,
    Empty,
    ProjectList,
    UserLimits,
    UserLimitsPut,
    UserList,
    UserRecord,
)

router = APIRouter()

PathUser = Annotated[str, Path(min_length=1, max_length=256)]  # as long as a user name may be

_TIMEOUT = 15.0


@router.get("/users")
async def list_users(edge: EdgeDep, principal: PrincipalDep) -> UserList:
    """Users with limits (admin)."""
    require_admin(principal)
    return await edge.bus.request(subjects.USERS_LIST, Empty(), UserList, timeout=_TIMEOUT)


@router.get("/users/{name}")
async def get_user(name: PathUser, edge: EdgeDep, principal: PrincipalDep) -> UserRecord:
    """A user's limits and this period's budget; a user key may read its own user's."""
    if principal.role != "admin" and principal.user != name:
        raise GatewayError(PERMISSION, "A user key may read its own user's limits only.")
    listing = await edge.bus.request(subjects.USERS_LIST, Empty(), UserList, timeout=_TIMEOUT)
    for user in listing.data:
        if user.name == name:
            user.budget = await budget_status(edge.bus, edge.quotas, "user", name, user)
            return user
    raise GatewayError(NOT_FOUND, f"user {name!r} has no limits", param="name")


@router.put("/users/{name}", openapi_extra=request_body(UserLimits))
async def put_user(
    name: PathUser, request: Request, response: Response, edge: EdgeDep, principal: PrincipalDep
) -> UserRecord:
    """Replace a user's limits (fields left out are unlimited)."""
    require_admin(principal)
    limits = await parse_body(request, UserLimits)
    change = UserLimitsPut(name=name, limits=limits)
    return await change_everywhere(edge.bus, response, "users", subjects.USERS_PUT, change, UserRecord)


@router.delete("/users/{name}")
async def delete_user(name: PathUser, response: Response, edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    """Lift a user's limits (its keys' and project's stay)."""
    require_admin(principal)
    await change_everywhere(edge.bus, response, "users", subjects.USERS_DELETE, ByUser(name=name), UserRecord)
    return {"id": name, "object": "user", "deleted": True}


@router.get("/usage/budgets")
async def budgets(edge: EdgeDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every budget this period: spend, reservations, what is left and when it resets. A user
    key sees its own key's, its user's and its project's."""
    out: list[BudgetStatus] = []
    if principal.role == "admin":
        keys = await edge.bus.request(subjects.CLIENT_KEYS_LIST, Empty(), ClientKeyList, timeout=_TIMEOUT)
        users = await edge.bus.request(subjects.USERS_LIST, Empty(), UserList, timeout=_TIMEOUT)
        projects = await edge.bus.request(subjects.PROJECTS_LIST, Empty(), ProjectList, timeout=_TIMEOUT)
        scoped: list[tuple[Scope, str, LimitFields]] = [("key", k.id, k) for k in keys.data]
        scoped += [("user", u.name, u) for u in users.data]
        scoped += [("project", p.name, p) for p in projects.data]
    else:
        key = await edge.bus.request(
            subjects.CLIENT_KEYS_GET, ById(id=principal.key_id), ClientKeyInfo, timeout=_TIMEOUT
        )
        scoped = [("key", key.id, key)]
        users = await edge.bus.request(subjects.USERS_LIST, Empty(), UserList, timeout=_TIMEOUT)
        scoped += [("user", u.name, u) for u in users.data if u.name == principal.user]
        if principal.project is not None:
            projects = await edge.bus.request(subjects.PROJECTS_LIST, Empty(), ProjectList, timeout=_TIMEOUT)
            scoped += [("project", p.name, p) for p in projects.data if p.name == principal.project]
    for scope, ident, fields in scoped:
        status = await budget_status(edge.bus, edge.quotas, scope, ident, fields)
        if status is not None:
            out.append(status)
    return {"object": "list", "data": [s.model_dump() for s in out]}
