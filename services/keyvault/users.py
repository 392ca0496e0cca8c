"""Users' limits: one record per user name, in a KV bucket every edge watches.

A user exists wherever a client key names it; a record here only adds limits and a budget
that every key of the user counts against. ``PUT`` replaces the whole set, ``DELETE`` lifts it.
"""

from __future__ import annotations

import logging
import time

from services.keyvault.client_keys import limit_values, values
from shared.bus import Bus
from shared.errors import NOT_FOUND, GatewayError
from shared.limits import scope_token
from shared.messages import ByUser, Empty, UserLimitsPut, UserList, UserRecord
from shared.subjects import USERS_BUCKET

log = logging.getLogger("switchyard.keyvault.users")


class UserStore:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def put(self, request: UserLimitsPut) -> UserRecord:
        record = UserRecord(name=request.name, updated_at=time.time(), **limit_values(request.limits))
        kv = await self.bus.kv(USERS_BUCKET)
        await kv.put(scope_token("user", request.name), record.model_dump_json().encode())
        log.info("set the limits of user %s", request.name)
        return record

    async def list_all(self, _: Empty) -> UserList:
        users = [UserRecord.model_validate_json(raw) for raw in await values(self.bus, USERS_BUCKET)]
        return UserList(data=sorted(users, key=lambda u: u.name))

    async def delete(self, request: ByUser) -> UserRecord:
        kv = await self.bus.kv(USERS_BUCKET)
        token = scope_token("user", request.name)
        try:
            entry = await kv.get(token)
        except Exception as exc:  # nats raises KeyNotFoundError
            raise GatewayError(NOT_FOUND, f"user {request.name!r} has no limits", param="name") from exc
        if not entry.value:
            raise GatewayError(NOT_FOUND, f"user {request.name!r} has no limits", param="name")
        await kv.delete(token)
        log.info("lifted the limits of user %s", request.name)
        return UserRecord.model_validate_json(entry.value)
