"""Client API keys: minted here, stored as hashes in a KV bucket that every edge watches."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from nats.js.errors import KeyDeletedError, KeyNotFoundError

from shared.apikeys import display_prefix, hash_key, new_client_key
from shared.bus import Bus
from shared.errors import CONFLICT, INVALID_REQUEST, NOT_FOUND, GatewayError
from shared.limits import LIMIT_FIELDS, LimitFields
from shared.messages import (
    ById,
    ClientKeyCreate,
    ClientKeyCreated,
    ClientKeyInfo,
    ClientKeyPatchRequest,
    ClientKeyRecord,
    Project,
    ProjectCreate,
    ProjectPatchRequest,
)
from shared.subjects import CLIENT_KEYS_BUCKET, PROJECTS_BUCKET

log = logging.getLogger("switchyard.keyvault.client_keys")


def _info(record: ClientKeyRecord) -> ClientKeyInfo:
    expired = record.expires_at is not None and record.expires_at <= time.time()
    return ClientKeyInfo(
        id=record.id,
        user=record.user,
        name=record.name,
        prefix=record.prefix,
        created_at=record.created_at,
        status="expired" if expired and record.status == "active" else record.status,
        expires_at=record.expires_at,
        allowed_models=record.allowed_models,
        description=record.description,
        project=record.project,
        **limit_values(record),
    )


def limit_values(source: LimitFields) -> dict[str, Any]:
    """The limit fields of a request or record; a budget without a period is monthly."""
    values = {name: getattr(source, name) for name in LIMIT_FIELDS}
    if values["budget_usd"] is not None and values["budget_period"] is None:
        values["budget_period"] = "month"
    return values


class ClientKeyStore:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _project_exists(self, name: str) -> None:
        kv = await self.bus.kv(PROJECTS_BUCKET)
        try:
            entry = await kv.get(name)
        except Exception as exc:  # nats raises KeyNotFoundError
            raise GatewayError(
                INVALID_REQUEST, f"no project {name!r}; create it with POST /ai/projects", param="project"
            ) from exc
        if not entry.value:
            raise GatewayError(
                INVALID_REQUEST, f"no project {name!r}; create it with POST /ai/projects", param="project"
            )

    async def create(self, request: ClientKeyCreate) -> ClientKeyCreated:
        if request.expires_at is not None and request.expires_at <= time.time():
            raise GatewayError(INVALID_REQUEST, "expires_at is in the past", param="expires_at")
        if request.project is not None:
            await self._project_exists(request.project)
        key = new_client_key()
        record = ClientKeyRecord(
            id="key_" + secrets.token_hex(8),
            key_hash=hash_key(key),
            prefix=display_prefix(key),
            user=request.user,
            name=request.name,
            created_at=time.time(),
            expires_at=request.expires_at,
            allowed_models=request.allowed_models,
            description=request.description,
            project=request.project,
            **limit_values(request),
        )
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        await kv.put(record.id, record.model_dump_json().encode())
        log.info("created client key %s for user %s", record.id, record.user)
        return ClientKeyCreated(key=key, **_info(record).model_dump(exclude={"object"}))

    async def records(self) -> list[ClientKeyRecord]:
        return sorted(
            (ClientKeyRecord.model_validate_json(raw) for raw in await values(self.bus, CLIENT_KEYS_BUCKET)),
            key=lambda r: r.created_at,
        )

    async def list_all(self) -> list[ClientKeyInfo]:
        return [_info(r) for r in await self.records()]

    async def _record(self, key_id: str) -> tuple[ClientKeyRecord, int]:
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        try:
            entry = await kv.get(key_id)
        except Exception as exc:
            raise GatewayError(NOT_FOUND, f"no client key {key_id!r}", param="id") from exc
        if not entry.value:
            raise GatewayError(NOT_FOUND, f"no client key {key_id!r}", param="id")
        return ClientKeyRecord.model_validate_json(entry.value), int(entry.revision or 0)

    async def get(self, request: ById) -> ClientKeyInfo:
        return _info((await self._record(request.id))[0])

    async def patch(self, request: ClientKeyPatchRequest) -> ClientKeyInfo:
        """Change a key in place (a compare-and-set on its revision: two admins' changes do not
        overwrite each other silently)."""
        record, revision = await self._record(request.id)
        changes = request.patch.model_dump(exclude_none=True)
        for name in request.cleared:
            changes[name] = None
        if changes.get("expires_at") is not None and changes["expires_at"] <= time.time():
            raise GatewayError(INVALID_REQUEST, "expires_at is in the past", param="expires_at")
        if changes.get("project") is not None:
            await self._project_exists(changes["project"])
        updated = record.model_copy(update=changes)
        updated = updated.model_copy(update=limit_values(updated))
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        try:
            await kv.update(request.id, updated.model_dump_json().encode(), last=revision)
        except Exception as exc:  # changed meanwhile
            raise GatewayError(CONFLICT, f"client key {request.id!r} changed meanwhile; try again") from exc
        log.info("changed client key %s: %s", record.id, ", ".join(sorted(changes)))
        return _info(updated)

    async def delete(self, key_id: str) -> ClientKeyInfo:
        kv = await self.bus.kv(CLIENT_KEYS_BUCKET)
        record, _ = await self._record(key_id)
        await kv.delete(key_id)
        log.info("revoked client key %s of user %s", record.id, record.user)
        return _info(record.model_copy(update={"status": "revoked"}))


async def values(bus: Bus, bucket: str) -> list[bytes]:
    """Every value in a bucket (none when it is empty or not made yet), as its stream's
    leader has them."""
    return list((await bus.kv_entries(bucket)).values())


class ProjectStore:
    """Projects: what client keys belong to, with limits and a budget all its keys share."""

    def __init__(self, bus: Bus, keys: ClientKeyStore) -> None:
        self.bus = bus
        self.keys = keys

    async def create(self, request: ProjectCreate) -> Project:
        project = Project(
            name=request.name, description=request.description, created_at=time.time(), **limit_values(request)
        )
        kv = await self.bus.kv(PROJECTS_BUCKET)
        try:
            await kv.create(request.name, project.model_dump_json().encode())
        except Exception as exc:  # the key exists
            raise GatewayError(CONFLICT, f"project {request.name!r} exists", param="name") from exc
        log.info("created project %s", request.name)
        return project

    async def list_all(self) -> list[Project]:
        projects = [Project.model_validate_json(raw) for raw in await values(self.bus, PROJECTS_BUCKET)]
        return sorted(projects, key=lambda p: p.name)

    async def patch(self, request: ProjectPatchRequest) -> Project:
        kv = await self.bus.kv(PROJECTS_BUCKET)
        try:
            entry = await kv.get(request.name)
        except Exception as exc:
            raise GatewayError(NOT_FOUND, f"no project {request.name!r}", param="name") from exc
        if not entry.value:
            raise GatewayError(NOT_FOUND, f"no project {request.name!r}", param="name")
        project = Project.model_validate_json(entry.value)
        changes = request.patch.model_dump(exclude_none=True)
        for name in request.cleared:
            changes[name] = None
        updated = project.model_copy(update=changes)
        updated = updated.model_copy(update=limit_values(updated))
        try:
            await kv.update(request.name, updated.model_dump_json().encode(), last=entry.revision)
        except Exception as exc:
            raise GatewayError(CONFLICT, f"project {request.name!r} changed meanwhile; try again") from exc
        return updated

    async def delete(self, name: str) -> Project:
        """A project with keys stays: move or revoke its keys first (409 names them)."""
        kv = await self.bus.kv(PROJECTS_BUCKET)
        try:
            entry = await kv.get(name)
        except (KeyNotFoundError, KeyDeletedError):
            entry = None
        if entry is None or not entry.value:
            raise GatewayError(NOT_FOUND, f"no project {name!r}", param="name")
        project = Project.model_validate_json(entry.value)
        holding = [r.id for r in await self.keys.records() if r.project == name]
        if holding:
            raise GatewayError(
                CONFLICT,
                f"project {name!r} still has client keys: {', '.join(holding[:10])}; move or revoke them first",
            )
        await kv.delete(name)
        log.info("deleted project %s", name)
        return project
